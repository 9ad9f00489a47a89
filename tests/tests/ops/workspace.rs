//! The workspace's own promises, checked offline from `cargo metadata --locked`: the declared
//! `rust-version` builds every locked package, and the crates depend on each other in the
//! documented direction (macros <- client <- runtime <- worker, beat; the admin binary and the
//! dashboard on top), the worker and beat link no web stack, and the command line and the
//! dashboard reach Redis only through the operator API.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// `cargo metadata --locked --offline` of this workspace.
fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let output = Command::new(cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--manifest-path", manifest])
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata --locked failed (is Cargo.lock up to date?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// `1.89` or `1.89.0` as comparable numbers.
fn version(text: &str) -> Vec<u64> {
    let mut parts: Vec<u64> = text.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    parts.resize(3, 0);
    parts
}

fn packages(metadata: &Value) -> &Vec<Value> {
    metadata["packages"].as_array().expect("packages")
}

#[test]
fn the_declared_rust_version_builds_every_locked_package() {
    let metadata = metadata();
    let ours = packages(&metadata)
        .iter()
        .find(|p| p["name"] == "stevedore")
        .and_then(|p| p["rust_version"].as_str())
        .expect("stevedore declares a rust-version");
    let too_new: Vec<String> = packages(&metadata)
        .iter()
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > version(ours))
                .then(|| format!("{} {} needs {needs}", p["name"], p["version"]))
        })
        .collect();
    assert!(
        too_new.is_empty(),
        "the workspace declares rust-version {ours}, but Cargo.lock holds: {too_new:?}"
    );
}

#[test]
fn crates_depend_on_each_other_in_one_direction() {
    let metadata = metadata();
    let ours: BTreeMap<String, Vec<String>> = packages(&metadata)
        .iter()
        .filter(|p| p["source"].is_null())
        .map(|p| {
            let deps = p["dependencies"].as_array().expect("dependencies");
            let names = deps
                .iter()
                .filter(|d| {
                    d["kind"].is_null()
                        && d["name"]
                            .as_str()
                            .is_some_and(|n| n.starts_with("stevedore"))
                })
                .map(|d| d["name"].as_str().unwrap_or_default().to_owned())
                .collect();
            (p["name"].as_str().unwrap_or_default().to_owned(), names)
        })
        .collect();
    let expected = [
        ("stevedore-macros", vec![]),
        ("stevedore", vec!["stevedore-macros"]),
        ("stevedore-runtime", vec!["stevedore"]),
        ("stevedore-web", vec!["stevedore"]),
        (
            "stevedore-cli",
            vec!["stevedore", "stevedore-runtime", "stevedore-web"],
        ),
        ("stevedore-worker", vec!["stevedore", "stevedore-runtime"]),
        ("stevedore-beat", vec!["stevedore", "stevedore-runtime"]),
    ];
    for (name, deps) in expected {
        let mut found = ours[name].clone();
        found.sort();
        assert_eq!(found, deps, "{name} depends on the wrong stevedore crates");
    }
}

#[test]
fn worker_and_beat_build_without_the_dashboard_or_a_web_framework() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    for package in ["stevedore-worker", "stevedore-beat"] {
        let output = Command::new(&cargo)
            .args([
                "tree",
                "--locked",
                "--offline",
                "-e",
                "normal",
                "-p",
                package,
            ])
            .args(["--prefix", "none", "--manifest-path", manifest])
            .output()
            .expect("run cargo tree");
        assert!(output.status.success(), "cargo tree -p {package} failed");
        let tree = String::from_utf8_lossy(&output.stdout);
        let linked: Vec<&str> = (tree.lines())
            .filter_map(|line| line.split(' ').next())
            .filter(|name| {
                ["axum", "hyper", "maud", "stevedore-web", "stevedore-cli"].contains(name)
            })
            .collect();
        assert!(linked.is_empty(), "{package} links {linked:?}");
    }
}

#[test]
fn the_command_line_and_the_dashboard_reach_redis_only_through_the_operator_api() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut naming = Vec::new();
    for dir in ["cli/src", "web/src"] {
        let mut dirs = vec![root.join(dir)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read a source directory") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or_default();
                    if code.contains("broker") || code.contains("redis::") {
                        naming.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        naming.is_empty(),
        "go through stevedore::admin instead: {naming:#?}"
    );
}

/// The targets of this workspace's own packages.
fn our_targets(metadata: &Value) -> Vec<&Value> {
    packages(metadata)
        .iter()
        .filter(|p| p["source"].is_null())
        .flat_map(|p| p["targets"].as_array().expect("targets"))
        .collect()
}

/// The Rust files of `target`: a binary's one file, or every file of a library's directory
/// but its binaries (`bin/`, `main.rs`).
fn sources_of(target: &Value) -> Vec<std::path::PathBuf> {
    let root = std::path::PathBuf::from(target["src_path"].as_str().expect("src_path"));
    let is_lib = target["kind"]
        .as_array()
        .is_some_and(|k| k.iter().any(|k| k == "lib" || k == "proc-macro"));
    if !is_lib {
        return vec![root];
    }
    let mut files = Vec::new();
    let mut dirs = vec![root.parent().expect("a library's directory").to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source directory") {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().unwrap_or_default();
            if path.is_dir() && name != "bin" {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && name != "main.rs" {
                files.push(path);
            }
        }
    }
    files
}

/// Whether the doc comments in `text` open a code block rustdoc would compile.
fn has_doctest(text: &str) -> bool {
    let mut open = false;
    for line in text.lines().map(str::trim_start) {
        let Some(doc) = line
            .strip_prefix("///")
            .or_else(|| line.strip_prefix("//!"))
        else {
            continue;
        };
        let Some(info) = doc.trim().strip_prefix("```") else {
            continue;
        };
        let rust = ["rust", "no_run", "compile_fail", "should_panic"];
        if !open && (info.is_empty() || rust.iter().any(|r| info.starts_with(r))) {
            return true;
        }
        open = !open;
    }
    false
}

#[test]
fn no_test_is_written_where_no_harness_runs_it() {
    let metadata = metadata();
    let mut unrun = Vec::new();
    for target in our_targets(&metadata) {
        let (test, doctest) = (target["test"] == true, target["doctest"] == true);
        for file in sources_of(target) {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            let tests = ["#[test]", "#[tokio::test", "#[cfg(test)]"];
            if !test && tests.iter().any(|t| text.contains(t)) {
                unrun.push(format!("{} (test = false)", file.display()));
            }
            if !doctest && has_doctest(&text) {
                unrun.push(format!("{} (doctest = false)", file.display()));
            }
        }
    }
    assert!(
        unrun.is_empty(),
        "tests in targets whose tests never run (set test/doctest back to true in the \
         package's Cargo.toml): {unrun:?}"
    );
}

#[test]
fn the_workspace_has_at_most_four_integration_test_targets() {
    let metadata = metadata();
    let tests: Vec<&str> = our_targets(&metadata)
        .into_iter()
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "test"))
        })
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        tests.len() <= 4,
        "each test target is a binary that links the whole workspace; add a module to \
         tests/tests/e2e or tests/tests/ops instead of a new target: {tests:?}"
    );
}

/// The worker's modules (top level under worker/src) each module names through `crate::`,
/// test code left out.
fn worker_module_imports() -> BTreeMap<String, std::collections::BTreeSet<String>> {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../worker/src"));
    let mut graph: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read worker/src") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let relative = path.strip_prefix(root).expect("under worker/src");
            let top = relative
                .iter()
                .next()
                .expect("a file name")
                .to_string_lossy();
            let module = top.trim_end_matches(".rs").to_owned();
            if module == "lib" || module == "bin" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let mut named = std::collections::BTreeSet::new();
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                // `crate::{a, b::c}` names each item; `crate::a::b` names `a`.
                let list = match rest.strip_prefix('{') {
                    Some(list) => list.split('}').next().unwrap_or_default(),
                    None => rest
                        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                        .next()
                        .unwrap_or_default(),
                };
                for item in list.split(',') {
                    let name: String = (item.trim().chars())
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module {
                        named.insert(name);
                    }
                }
            }
            graph.entry(module).or_default().extend(named);
        }
    }
    let modules: Vec<String> = graph.keys().cloned().collect();
    for named in graph.values_mut() {
        named.retain(|n| modules.contains(n));
    }
    graph
}

#[test]
fn no_two_worker_modules_import_each_other_even_through_others() {
    let graph = worker_module_imports();
    assert!(graph.contains_key("executor") && graph["executor"].contains("admission"));
    // A module is in a circle when it reaches itself.
    for start in graph.keys() {
        let (mut seen, mut next) = (std::collections::BTreeSet::new(), vec![start.clone()]);
        let mut path: BTreeMap<String, String> = BTreeMap::new();
        while let Some(module) = next.pop() {
            for named in &graph[&module] {
                if named == start {
                    let mut circle = vec![module.clone()];
                    while let Some(from) = circle.last().and_then(|m| path.get(m)) {
                        circle.push(from.clone());
                    }
                    panic!("worker/src has an import circle through {start}: {circle:?}");
                }
                if seen.insert(named.clone()) {
                    path.insert(named.clone(), module.clone());
                    next.push(named.clone());
                }
            }
        }
    }
}
