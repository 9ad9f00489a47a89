//! Shared pieces of the benchmark.

/// Wall-clock microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Returns the wall-clock microsecond at which it started: publish-to-start latency finer than
/// the records' milliseconds.
#[stevedore::task(name = "bench.stamp")]
pub async fn stamp() -> u64 {
    now_us()
}

/// The environment variable that makes the benchmark binary run as a beat.
pub const BEAT_ENV: &str = "STEVEDORE_BENCH_BEAT";

/// The environment variable that makes the benchmark binary run as a worker.
pub const WORKER_ENV: &str = "STEVEDORE_BENCH_WORKER";

/// The stream of shared queue `queue` in the benchmark's namespace (`stevedore`).
pub fn stream_of(queue: &str) -> String {
    let queue = stevedore::Destination::queue(queue).expect("a valid queue name");
    stevedore::broker::Keys::new("stevedore").stream(&queue)
}
