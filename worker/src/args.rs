//! Command-line options of the `worker` binary; apps flatten [`WorkerArgs`] into their own.

use std::time::Duration;

use clap::Args;

/// Options every stevedore binary takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Redis to use: redis://HOST:PORT[/DB] or unix:///PATH.
    #[arg(
        long,
        env = "STEVEDORE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    pub redis_url: String,
    /// Prefix of every key, so several apps can share one Redis.
    #[arg(
        long,
        env = "STEVEDORE_NAMESPACE",
        default_value = "stevedore",
        global = true
    )]
    pub namespace: String,
}

/// Options of a worker node.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Redis and namespace.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// This node's name (default: the host name). It also names the node's own queue.
    #[arg(long, env = "STEVEDORE_NODE")]
    pub node: Option<String>,
    /// Shared queues to read, comma-separated, in priority order.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    pub queues: Vec<String>,
    /// Tasks run at once on this node.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
    /// How long a graceful stop waits for running tasks (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// How long task records and results are kept (e.g. 1d, 12h).
    #[arg(long, default_value = "1d", value_parser = parse_duration)]
    pub record_ttl: Duration,
    /// Longest block of one read on Redis; shorter means faster reconnects, more idle traffic.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub block: Duration,
}

/// Parses `500ms`, `30s`, `5m`, `1h`, `1d` (and combinations such as `1m 30s`); a bare number
/// is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. 500ms, 30s, 5m, 1h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_usual_forms() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("not a duration"));
    }
}
