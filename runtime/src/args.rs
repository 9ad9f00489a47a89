//! Options and value parsers every stevedore binary shares.

use std::time::Duration;

use clap::Args;
use stevedore::Destination;

/// Options every stevedore binary takes.
#[derive(Clone, Args)]
pub struct GlobalArgs {
    /// Redis to use: redis://HOST:PORT[/DB] (rediss:// for TLS), unix:///PATH,
    /// redis+sentinel://S1:P,S2:P/MASTER or redis+cluster://H1:P,H2:P (docs/deployment.md). Put passwords in
    /// STEVEDORE_REDIS_PASSWORD(_FILE) rather than here.
    #[arg(
        long,
        env = "STEVEDORE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true,
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
    /// How log lines are written to stderr: text (for people) or json (one object per line).
    #[arg(
        long,
        env = "STEVEDORE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields` (the message and its
    /// fields), `target`, and `span` (the current span's fields: a task line carries
    /// `task.id`, `task.name`, `queue` and `attempt`).
    Json,
}

impl LogFormat {
    /// The format `STEVEDORE_LOG_FORMAT` names (text when unset or unknown): for processes
    /// started without a command line, such as process-pool children.
    pub fn from_env() -> Self {
        match std::env::var("STEVEDORE_LOG_FORMAT").as_deref() {
            Ok("json") => Self::Json,
            _ => Self::Text,
        }
    }
}

impl std::fmt::Debug for GlobalArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalArgs")
            .field("redis_url", &stevedore::broker::redact_url(&self.redis_url))
            .field("namespace", &self.namespace)
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// Where a task goes: `--queue Q`, `--node N` or `--broadcast` (at most one).
#[derive(Debug, Clone, Default, Args)]
pub struct TargetArgs {
    /// Publish to this shared queue (default: `default`).
    #[arg(long, conflicts_with_all = ["node", "broadcast"])]
    pub queue: Option<String>,
    /// Publish to this node's own queue (`enqueue` also takes `auto`: the live node with the
    /// most free capacity).
    #[arg(long, conflicts_with = "broadcast")]
    pub node: Option<String>,
    /// Publish to every live node.
    #[arg(long)]
    pub broadcast: bool,
}

impl TargetArgs {
    /// The destination chosen, if one was.
    pub fn destination(&self) -> stevedore::Result<Option<Destination>> {
        Destination::pick(self.queue.as_deref(), self.node.as_deref(), self.broadcast)
    }
}

/// A task call from the shell: `TASK [--args JSON] [--kwargs JSON] [--queue Q | --node N |
/// --broadcast]` (`enqueue`, `schedule add`).
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// The task name, e.g. stevedore.echo.
    pub task: String,
    /// Positional arguments as a JSON array.
    #[arg(long, default_value = "[]")]
    pub args: String,
    /// Keyword arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    pub kwargs: String,
    /// Where it goes.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// The remote-control side of the `worker` command (AWX's `run_dispatcher --status` ...): ask
/// running nodes over Redis instead of running one.
#[derive(Debug, Clone, Args)]
pub struct ControlArgs {
    /// Show each node's pool: every worker with its counters and current task.
    #[arg(long, group = "control")]
    pub status: bool,
    /// Show the ids of running and queued tasks.
    #[arg(long, group = "control")]
    pub running: bool,
    /// Recycle every worker; each finishes its current task first.
    #[arg(long, group = "control")]
    pub reload: bool,
    /// Cancel these task ids wherever they are.
    #[arg(long, group = "control", num_args = 1.., value_name = "ID")]
    pub cancel: Vec<String>,
    /// Ask every node (default: the node named by --node, else this host's).
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for answers.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub control_timeout: Duration,
}

impl ControlArgs {
    /// Whether a control request was asked for (rather than running a node).
    pub fn requested(&self) -> bool {
        self.status || self.running || self.reload || !self.cancel.is_empty()
    }
}

/// Parses a size: `512MiB`, `1GiB`, `100MB`, `64KiB`, or bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "KiB" | "K" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" | "M" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" | "G" => 1 << 30,
        _ => return Err(format!("`{text}` is not a size; write e.g. 512MiB or 2GiB")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("`{text}` is not a size; write e.g. 512MiB or 2GiB"))
}

pub use stevedore::admin::format::{parse_duration, parse_period};

/// This node's name: `given`, else the host name; checked as a queue name (it names the
/// node's own queue).
pub fn node_name(given: Option<&str>) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let name = match given {
        Some(name) => name.to_owned(),
        None => hostname::get()
            .context("cannot read the host name; pass --node NAME")?
            .to_string_lossy()
            .into_owned(),
    };
    stevedore::QueueName::new("node", &name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
    }

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

    #[test]
    fn absurd_durations_are_refused_not_panicked_on() {
        for text in ["1e30", "1e19", "inf", "-1", "NaN", "200y"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert!(parse_period("0").is_err() && parse_period("0s").is_err());
        assert_eq!(parse_period("2s").unwrap(), Duration::from_secs(2));
    }
}
