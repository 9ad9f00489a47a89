//! End to end on a real server: the data path, its faults, Cluster, Sentinel, beat, workflows
//! and placement, with real worker processes. scripts/test runs this target twice, against
//! `redis-server` and against Valkey (`STEVEDORE_TEST_SERVER`).
//!
//! One test binary of many modules, not a binary per file: each binary links the whole
//! workspace, and 27 of them cost most of the suite's build time and disk (docs/decisions.md,
//! "The test suite"). A module runs alone as `cargo test --test e2e delivery::`.

mod beat;
mod cluster;
mod delivery;
mod dispatcher;
mod duplicates;
mod fault_suite;
mod faults;
mod membership;
mod node_life;
mod placement;
mod semantics;
mod sentinel;
mod workflows;
