//! What operators and app developers touch, against a real `redis-server`: the CLI, the
//! dashboard (router and headless Chromium), metrics and traces, node health, records, the
//! process pool, `#[task]` end to end, TLS and ACLs, signing, the wire protocol by hand, the
//! guide built as its own crate; and the workspace's own promises (crate graph, MSRV, test
//! targets). Run against Redis only (scripts/test).
//!
//! One test binary of many modules (see tests/tests/e2e/main.rs for why). A module runs alone as
//! `cargo test --test ops cli::`.

mod browser;
mod cli;
mod fake;
mod guide;
mod health;
mod history;
mod observe;
mod process_pool;
mod progress;
mod protocol;
mod records;
mod secure;
mod signed_writes;
mod tasks;
mod traces;
mod web;
mod workspace;
