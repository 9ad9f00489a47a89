//! The workspace's own promises, checked offline from `cargo metadata --locked`: the declared
//! `rust-version` builds every locked package, and the crates depend on each other in the
//! documented direction (macros <- client <- web <- cli <- worker, beat).

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
        ("stevedore-web", vec!["stevedore"]),
        ("stevedore-cli", vec!["stevedore", "stevedore-web"]),
        ("stevedore-worker", vec!["stevedore", "stevedore-cli"]),
        ("stevedore-beat", vec!["stevedore", "stevedore-cli"]),
    ];
    for (name, deps) in expected {
        let mut found = ours[name].clone();
        found.sort();
        assert_eq!(found, deps, "{name} depends on the wrong stevedore crates");
    }
}
