//! Command-line options of the `worker` binary; apps flatten [`WorkerArgs`] into their own.

use std::time::Duration;

use clap::Args;

use stevedore_runtime::{parse_duration, parse_period, parse_size, GlobalArgs};

use crate::pool::PoolKind;

/// Options of a worker node.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Redis and namespace.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// This node's name (default: the host name). It also names the node's own queue.
    #[arg(long, env = "STEVEDORE_NODE")]
    pub node: Option<String>,
    /// Shared queues to read, comma-separated: in strict priority order, or weighted
    /// (`high=5,default=3,low=1`).
    #[arg(long, value_delimiter = ',', default_value = "default")]
    pub queues: Vec<String>,
    /// Workers at most (tasks run at once): a number, or `auto` (from CPUs and memory).
    #[arg(long, visible_alias = "concurrency", default_value = "auto", value_parser = parse_worker_count)]
    pub max_workers: WorkerCount,
    /// Workers kept even when idle.
    #[arg(long, default_value_t = 1)]
    pub min_workers: usize,
    /// `async`: tasks are tokio tasks of this process; `process`: child processes, for
    /// blocking and CPU-bound tasks.
    #[arg(long, value_enum, default_value = "async")]
    pub pool: PoolKind,
    /// A worker idle this long is retired (down to --min-workers).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Recycle a child process after this many tasks (process pool).
    #[arg(long)]
    pub max_tasks_per_child: Option<u64>,
    /// Recycle a child process above this resident memory, e.g. 512MiB (process pool).
    #[arg(long, value_parser = parse_size)]
    pub max_memory_per_child: Option<u64>,
    /// Serve /metrics (Prometheus), /healthz and /readyz on this address, e.g. 127.0.0.1:9400
    /// (off by default).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// Write task events (started and each outcome; what tasks publish) to the capped event
    /// stream for outside monitors (`stevedore events`). Also on with STEVEDORE_EVENTS=1.
    #[arg(long)]
    pub events: bool,
    /// How often this node records its heartbeat.
    #[arg(long, default_value = "2s", value_parser = parse_period)]
    pub heartbeat: Duration,
    /// A node whose heartbeat is older than this is lost: its capacity counts as zero and its
    /// work is reaped by a live peer.
    #[arg(long, default_value = "15s", value_parser = parse_period)]
    pub lost_after: Duration,
    /// How long a lost or stopped process is kept for `stevedore nodes`; a node gone this long
    /// loses its broadcast group (broadcasts published meanwhile are not run when it returns).
    #[arg(long, default_value = "1h", value_parser = parse_period)]
    pub lost_retention: Duration,
    /// Move the tasks waiting in a lost node's own queue to this shared queue (default: they
    /// wait for the node to come back).
    #[arg(long, value_name = "QUEUE")]
    pub adopt_lost_node_queue: Option<String>,
    /// Stop taking work when a live peer reads a newer message protocol.
    #[arg(long)]
    pub yield_to_newer: bool,
    /// Most dead letters kept per queue.
    #[arg(long, default_value_t = 100_000)]
    pub dead_letter_cap: u64,
    /// Dead letters older than this are dropped (e.g. 7d).
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub dead_letter_max_age: Duration,
    /// Programs the built-in `stevedore.command` task may run on this node (repeat the flag for
    /// several); none by default.
    #[arg(long = "allow-command", value_name = "PROGRAM")]
    pub allow_commands: Vec<String>,
    /// Environment variables a `stevedore.command` child gets from this worker's environment,
    /// and the only ones a call may set (repeat the flag for several); none by default, so a
    /// child starts with an empty environment. `STEVEDORE_*` variables are refused.
    #[arg(long = "command-env", value_name = "NAME")]
    pub command_env: Vec<String>,
    /// How long a cancelled task that can see its cancellation, or a child told to stop, gets
    /// before it is aborted or killed; also added to a soft timeout when no hard one is given.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub cancel_grace: Duration,
    /// How long a graceful stop waits for running tasks (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// How long task records and results are kept (e.g. 1d, 12h): failures, and successes
    /// someone waits for (`notify`, workflow steps).
    #[arg(long, default_value = "1d", value_parser = parse_period)]
    pub record_ttl: Duration,
    /// How long the record of a success nobody waits for is kept (at most --record-ttl): short
    /// by default, so that Redis holds seconds of successes, not a day (docs/deployment.md).
    #[arg(long, default_value = "30s", value_parser = parse_period)]
    pub succeeded_ttl: Duration,
    /// How many finished runs `stevedore tasks` and the dashboard's task search can find, per
    /// queue and final state (the newest are kept; 0 keeps none). Each id leads to its record
    /// for as long as the record is kept (--record-ttl, --succeeded-ttl).
    #[arg(long, default_value_t = stevedore::broker::DEFAULT_HISTORY)]
    pub history: usize,
    /// Count each task's runs, failures and run times per minute (the dashboard's chart and
    /// task table; a few commands per recorder batch): `--task-minutes false` turns it off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub task_minutes: bool,
    /// Longest block of one read on Redis; shorter means faster reconnects, more idle traffic.
    #[arg(long, default_value = "2s", value_parser = parse_period)]
    pub block: Duration,
}

impl WorkerArgs {
    /// Checks what one flag cannot check alone: a heartbeat must be more frequent than the
    /// silence that makes a node lost, or peers reap live workers.
    pub fn validate(&self) -> Result<(), String> {
        if self.lost_after <= self.heartbeat {
            return Err(format!(
                "--lost-after {:?} must be longer than --heartbeat {:?} (a few heartbeats: the default is 15s against 2s)",
                self.lost_after, self.heartbeat
            ));
        }
        Ok(())
    }
}

/// `--max-workers`: a number or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerCount {
    /// Computed from the machine's CPUs and memory.
    Auto,
    /// This many.
    Fixed(usize),
}

impl WorkerCount {
    /// The number of workers for a pool of `kind` on this machine. `auto`: 128 per CPU for the
    /// async pool (between 128 and 1,024: a worker costs nothing idle, and a node reads at most as
    /// many messages as it has free units, so short tasks need many to be read in large
    /// batches; docs/decisions.md); for the process pool 4 per CPU, but no more than one per
    /// 256 MiB of memory above 1 GiB, and at least 2.
    pub fn resolve(self, kind: PoolKind) -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        match (self, kind) {
            (Self::Fixed(n), _) => n,
            (Self::Auto, PoolKind::Async) => (cpus * 128).clamp(128, 1024),
            (Self::Auto, PoolKind::Process) => {
                let by_memory = total_memory().map_or(usize::MAX, |bytes| {
                    (bytes.saturating_sub(1 << 30) / (256 << 20)) as usize
                });
                (cpus * 4).min(by_memory).max(2)
            }
        }
    }
}

/// The memory this process may use: the machine's, or its cgroup's limit when lower (a
/// container's `memory.max`, cgroup v2).
fn total_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    memory_limit(&meminfo, cgroup.as_deref())
}

/// `MemTotal` of `meminfo`, lowered to a cgroup `memory.max` (bytes, or `max`) when given.
fn memory_limit(meminfo: &str, cgroup_max: Option<&str>) -> Option<u64> {
    let machine = crate::pool::kib_field(meminfo, "MemTotal:")?;
    let cgroup = cgroup_max.and_then(|max| max.trim().parse::<u64>().ok());
    Some(cgroup.map_or(machine, |limit| limit.min(machine)))
}

fn parse_worker_count(text: &str) -> Result<WorkerCount, String> {
    match text {
        "auto" => Ok(WorkerCount::Auto),
        _ => match text.parse::<usize>() {
            Ok(n) if (1..=100_000).contains(&n) => Ok(WorkerCount::Fixed(n)),
            _ => Err(format!(
                "`{text}` is not a worker count: use 1 to 100000, or auto"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_sizing_sees_a_containers_memory_limit() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:  1000 kB\n";
        assert_eq!(memory_limit(meminfo, None), Some(24_576_000 * 1024));
        assert_eq!(
            memory_limit(meminfo, Some("max\n")),
            Some(24_576_000 * 1024)
        );
        assert_eq!(
            memory_limit(meminfo, Some("2147483648\n")),
            Some(2_147_483_648),
            "a 2 GiB container"
        );
    }

    #[test]
    fn rss_is_read_in_bytes_from_vmrss() {
        let status = "Name:\tworker\nVmRSS:\t   11272 kB\nRssAnon:\t 1872 kB\n";
        assert_eq!(
            crate::pool::kib_field(status, "VmRSS:"),
            Some(11_272 * 1024)
        );
        assert!(crate::pool::rss_bytes(std::process::id()).unwrap() > 1024 * 1024);
    }

    #[test]
    fn worker_counts_parse() {
        assert_eq!(parse_worker_count("auto").unwrap(), WorkerCount::Auto);
        assert_eq!(parse_worker_count("8").unwrap(), WorkerCount::Fixed(8));
        assert!(parse_worker_count("0").is_err());
        assert!(WorkerCount::Auto.resolve(PoolKind::Process) >= 2);
        assert!((128..=1024).contains(&WorkerCount::Auto.resolve(PoolKind::Async)));
    }
}
