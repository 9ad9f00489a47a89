//! docs/guide.md cannot rot: its files are written into a crate of their own, which is built
//! against this workspace's `stevedore` and `stevedore-worker` and run against a real
//! redis-server (with a beat for its schedule); the producer must print what the guide says.
//!
//! The crate builds in this workspace's target directory with this workspace's dev profile, so
//! that it reuses every dependency the suite compiled (a target directory of its own rebuilt
//! them all: about 2 GB and minutes more on a clean clone). Its binaries are renamed
//! `guide-worker` and `guide-producer` there: `target/debug/worker` is the stock worker's.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use stevedore_tests::{eventually, KillOnDrop, RedisServer};

/// The workspace root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The guide's files: every fenced block whose info string names `file=PATH`, and the text
/// block the producer prints.
fn guide_files(guide: &str) -> (Vec<(String, String)>, String) {
    let (mut files, mut expected) = (Vec::new(), String::new());
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let body = body.join("\n") + "\n";
        match info.split_once("file=") {
            Some((_, path)) => files.push((path.trim().to_owned(), body)),
            None if info == "text" && expected.is_empty() => expected = body,
            None => {}
        }
    }
    (files, expected)
}

/// The guide's two binaries under names of their own (see the module docs).
fn guide_bins() -> String {
    ["worker", "producer"]
        .map(|name| format!("\n[[bin]]\nname = \"guide-{name}\"\npath = \"src/bin/{name}.rs\"\n"))
        .concat()
}

/// This workspace's `[profile.dev]` tables, for the guide's manifest: the same profile is what
/// lets its build reuse the workspace's compiled dependencies.
fn dev_profile() -> String {
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = manifest.parse().unwrap();
    let dev = manifest["profile"]["dev"].clone();
    let profile = toml::Table::from_iter([("dev".to_owned(), dev)]);
    let table = toml::Table::from_iter([("profile".to_owned(), toml::Value::Table(profile))]);
    format!("\n{}", toml::to_string(&table).unwrap())
}

/// `cargo tree` of `manifest` over `edges`: each registry package (`name vX.Y.Z`) with the
/// features it is built with (a package built with two sets, for the host and the target, is
/// listed twice).
fn tree(manifest: &Path, edges: &str, workspace: bool) -> Vec<(String, BTreeSet<String>)> {
    let mut cargo = cargo();
    cargo.args(["tree", "--offline", "--prefix", "none", "-e", edges]);
    cargo
        .args(["--format", "{p}|{f}", "--manifest-path"])
        .arg(manifest);
    if workspace {
        cargo.arg("--workspace");
    }
    let out = cargo.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<(String, BTreeSet<String>)> = (text.lines())
        .filter_map(|l| l.trim_end_matches(" (*)").split_once('|'))
        .filter(|(package, _)| !package.contains('('))
        .map(|(p, f)| {
            let features = f.split(',').filter(|f| !f.is_empty()).map(Into::into);
            (p.to_owned(), features.collect())
        })
        .collect();
    lines.sort();
    lines.dedup();
    lines
}

/// Gives the registry crates of the guide's crate the features they have in the workspace's
/// build, so that cargo reuses what the workspace compiled instead of compiling them again
/// (with syn's features alone differing, every proc macro and all that depends on one did).
/// Only the stevedore crates, at their default features, are then the guide's own to build.
fn align_features(dir: &Path) {
    let ours = tree(&workspace().join("Cargo.toml"), "normal,build,dev", true);
    let manifest = dir.join("Cargo.toml");
    let theirs = tree(&manifest, "normal,build", false);
    let target_side = tree(&manifest, "normal,no-proc-macro", false);
    let mut extra = String::from("\n# As the workspace builds them (tests/tests/ops/guide.rs).\n");
    let direct: toml::Table = std::fs::read_to_string(&manifest).unwrap().parse().unwrap();
    for (package, features) in &theirs {
        let (name, version) = package.split_once(" v").unwrap();
        // Built as the workspace builds it already, or named by the guide (cargo refuses a
        // crate under two names): left as it is.
        if ours.contains(&(package.clone(), features.clone()))
            || direct["dependencies"].get(name).is_some()
        {
            continue;
        }
        // The workspace's smallest set that holds the guide's.
        let Some((_, wanted)) = (ours.iter())
            .filter(|(p, f)| p == package && f.is_superset(features) && f != features)
            .min_by_key(|(_, f)| f.len())
        else {
            continue;
        };
        let table = match target_side.iter().any(|(p, _)| p == package) {
            true => "dependencies",
            false => "build-dependencies",
        };
        let listed: Vec<&String> = wanted.iter().filter(|f| *f != "default").collect();
        extra.push_str(&format!(
            "[{table}.aligned-{name}-{}]\npackage = {name:?}\nversion = \"={version}\"\n\
             default-features = {}\nfeatures = {listed:?}\n",
            version.replace('.', "-"),
            wanted.contains("default"),
        ));
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(manifest)
        .unwrap();
    std::io::Write::write_all(&mut file, extra.as_bytes()).unwrap();
}

/// `cargo`, without what cargo set for this test process (CARGO_MANIFEST_DIR, CARGO_PKG_*...):
/// build scripts that read it (ring's) would run again and overwrite the workspace's compiled
/// dependencies in place, and the next workspace build would redo them.
fn cargo() -> Command {
    let mut cargo = Command::new(env!("CARGO"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let configures_cargo = ["HOME", "INCREMENTAL", "BUILD_", "PROFILE_", "TERM_", "NET_"]
            .iter()
            .any(|kept| {
                name.strip_prefix("CARGO_")
                    .is_some_and(|n| n.starts_with(kept))
            });
        if name.starts_with("CARGO_") && !configures_cargo {
            cargo.env_remove(&*name);
        }
    }
    cargo
}

/// The target directory the suite was built in (`CARGO_TARGET_TMPDIR` is its `tmp`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Writes the guide's crate into `dir`, depending on this workspace by path.
fn write_crate(dir: &Path) -> String {
    let guide = std::fs::read_to_string(workspace().join("docs/guide.md")).unwrap();
    let (files, expected) = guide_files(&guide);
    let root = workspace();
    for (path, mut body) in files {
        if path == "Cargo.toml" {
            let client = root.join("client").display().to_string();
            let worker = root.join("worker").display().to_string();
            body = body
                .replace(
                    "stevedore = \"0.1\"",
                    &format!("stevedore = {{ path = {client:?} }}"),
                )
                .replace(
                    "stevedore-worker = \"0.1\"",
                    &format!("stevedore-worker = {{ path = {worker:?} }}"),
                );
            body = body.replacen("[package]\n", "[package]\nautobins = false\n", 1);
            body.push_str(&guide_bins());
            body.push_str("\n[workspace]\n");
            body.push_str(&dev_profile());
        }
        let file = dir.join(&path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, body).unwrap();
    }
    // The versions this workspace was tested with.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    expected
}

// Runs cargo: among the first under nextest, being among the longest on a clean clone
// (.config/nextest.toml).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guide_builds_as_its_own_crate_and_does_what_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write_crate(dir.path());
    let target = target_dir();
    align_features(dir.path());
    let built = cargo()
        .args(["build", "--offline", "--quiet", "--bins"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "the guide's crate does not build: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    // Its publishing code is tested with a fake client: no Redis is running yet.
    let tested = cargo()
        .args(["test", "--offline", "--quiet", "--test", "publishing"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        tested.status.success(),
        "the guide's test without Redis fails: {}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );

    let redis = RedisServer::start();
    let bin = |name: &str| target.join("debug").join(name);
    let _worker = KillOnDrop(
        Command::new(bin("guide-worker"))
            .args(["--redis-url", &redis.url(), "--node", "billing-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let _beat = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_test-beat"))
            .args(["--redis-url", &redis.url(), "--lease", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let produced = Command::new(bin("guide-producer"))
        .env("STEVEDORE_REDIS_URL", redis.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&produced.stdout);
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    assert_eq!(stdout, expected, "the producer prints what the guide says");

    // The schedule fires: beat publishes billing.hello("cron") and the worker runs it.
    let client = redis.stevedore().await;
    let wait = std::time::Duration::from_secs(30);
    let result = eventually("a run of the guide's schedule to succeed", wait, || async {
        let (schedule, _) = client.schedule("hello-every-second").await.ok()??;
        let record = client
            .task(&schedule.run_id(schedule.last_fired_at?))
            .await
            .ok()?;
        record.task_run()?.result.clone()
    })
    .await;
    assert_eq!(
        result,
        rmpv::Value::from("hello cron, from node billing-1 (attempt 1)")
    );
}
