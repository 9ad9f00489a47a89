//! The benchmark keeps working: `stevedore-bench --quick` runs every part on a few thousand
//! tasks (against its own redis-server) and exits 0. Its figures mean nothing in a debug build
//! beside other tests, and nothing here reads them: speed targets live in the benchmark's own
//! runs (BENCHMARKS.md), never in a test.

use std::process::Command;

#[test]
fn the_benchmark_runs_every_part_in_quick_mode() {
    let out = Command::new(env!("CARGO_BIN_EXE_stevedore-bench"))
        .arg("--quick")
        .output()
        .expect("start stevedore-bench");
    assert!(
        out.status.success(),
        "stevedore-bench --quick failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
