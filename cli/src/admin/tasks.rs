//! `stevedore tasks --state STATE [--queue Q] [--task NAME] [--since DUR] [--error TEXT]
//! [--limit N] [--before MS] [--json]`: finished tasks found in the history the workers keep
//! (`worker --history`), newest first, as the dashboard's `/tasks` finds them.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use stevedore::admin::format::{printable, short_age, timestamp};
use stevedore::admin::{history_state, Admin, TaskPage, TaskQuery};

/// `tasks`.
#[derive(Debug, Args)]
pub struct TasksArgs {
    /// The final state: succeeded, failed, dead, cancelled, timed_out, expired or discarded.
    #[arg(long)]
    state: String,
    /// Only this queue (`NAME`, `node:NAME` or `broadcast`); every queue by default.
    #[arg(long)]
    queue: Option<String>,
    /// Only tasks of this name.
    #[arg(long)]
    task: Option<String>,
    /// Only tasks that finished within this long (e.g. 15m, 1h, 2d).
    #[arg(long, value_parser = stevedore_runtime::parse_period)]
    since: Option<Duration>,
    /// Only tasks whose error contains this text (case-insensitive).
    #[arg(long)]
    error: Option<String>,
    /// Most to list (a page); the next page is `--before` the time the last line says.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    /// Only tasks that finished before this time (ms since the epoch): the next page.
    #[arg(long)]
    before: Option<u64>,
    /// Print JSON: `{"tasks": [{"id", "task", "queue", "node", "state", "attempt",
    /// "published_at", "started_at", "finished_at", "error"}], "expired", "next"}`.
    #[arg(long)]
    json: bool,
}

pub async fn run(admin: &Admin, args: TasksArgs) -> anyhow::Result<ExitCode> {
    let query = TaskQuery {
        state: history_state(&args.state)?,
        queue: args.queue,
        task: args.task,
        since: args.since,
        error: args.error,
        before_ms: args.before,
        limit: args.limit as usize,
    };
    let page = admin.tasks(&query).await?;
    if args.json {
        say!("{}", stevedore::admin::json::task_page(&page));
        return Ok(ExitCode::SUCCESS);
    }
    print_page(&page)?;
    Ok(ExitCode::SUCCESS)
}

fn print_page(page: &TaskPage) -> std::io::Result<()> {
    let now = stevedore::now_ms();
    for row in &page.rows {
        let run = &row.run;
        let error = run.error.as_deref().and_then(|e| e.lines().next());
        say!(
            "{}  {:>6} ago  {}  {}  {}  {}  attempt {}  {}",
            timestamp(row.finished_at),
            short_age(now.saturating_sub(row.finished_at)),
            run.state.as_str(),
            run.id,
            printable(&run.task),
            printable(&run.queue),
            run.attempt,
            printable(error.unwrap_or("")),
        );
    }
    if page.rows.is_empty() {
        say!("no such tasks in the history");
    }
    if page.expired > 0 {
        say!(
            "({} more passed over: their records expired; successes nobody waits for are kept for the workers' --succeeded-ttl, 30s by default)",
            page.expired
        );
    }
    if let Some(next) = page.next {
        say!("(more may be older: --before {next})");
    }
    Ok(())
}
