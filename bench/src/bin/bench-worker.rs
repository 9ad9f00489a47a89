//! The stock worker plus `bench.stamp`, which returns the microsecond it started (for
//! publish-to-start latency finer than the records' milliseconds).

use stevedore::task;

/// Returns the wall-clock microsecond at which it started.
#[task(name = "bench.stamp")]
async fn stamp() -> u64 {
    stevedore_bench::now_us()
}

fn main() -> std::process::ExitCode {
    let _ = stamp::NAME;
    stevedore_worker::main()
}
