//! Asking nodes and printing their answers: `worker --status|--running|--reload|--cancel`,
//! and the `stevedore status|running|reload|registered|cancel|queue pause` commands, which
//! print the same way.
//!
//! A node that answers is printed; one that does not answer in time is `NODE: not
//! answering` (and the exit code is non-zero); a lost node is `NODE: lost (no heartbeat; not
//! asked)` and does not change the exit code.

use std::io::Write as _;
use std::process::ExitCode;

use stevedore::control::{Answer, CancelSelector, Command, NodeAnswer, NodeStatus, Target};

/// `println!` that returns an error instead of panicking when stdout is closed (`| head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

/// `worker --status|--running|--reload|--cancel`: asks `node` (default: this host's node
/// name; every node for a cancel) and prints the answers.
pub fn control_from_worker(
    global: &crate::GlobalArgs,
    node: Option<String>,
    control: crate::ControlArgs,
) -> ExitCode {
    let command = if control.status {
        Command::Status
    } else if control.running {
        Command::Running
    } else if control.reload {
        Command::Reload
    } else {
        Command::Cancel(CancelSelector::ids(control.cancel.clone()))
    };
    let (json, timeout) = (control.json, control.control_timeout);
    let target = match (control.all || matches!(command, Command::Cancel(_)), node) {
        (true, _) => Ok(Target::All),
        (false, node) => crate::node_name(node.as_deref()).map(Target::Node),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = runtime.map_err(anyhow::Error::from).and_then(|runtime| {
        runtime.block_on(async {
            let config = stevedore::ClientConfig::new(&global.redis_url, &global.namespace);
            let admin = stevedore::Client::with_config(config).await?.admin();
            let answers = match command {
                Command::Cancel(selector) => admin.cancel(selector, timeout).await?,
                command => admin.ask(target?, command, timeout).await?,
            };
            print_answers(&answers, json)
        })
    });
    outcome.unwrap_or_else(|error| crate::fail(&error))
}

/// Prints the answers (as JSON with `json`); the exit code is non-zero when a live node did
/// not answer (a lost node is reported and does not change it: it was not asked).
pub fn print_answers(answers: &[NodeAnswer], json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let rows: Vec<serde_json::Value> = answers.iter().map(answer_json).collect();
        say!("{}", serde_json::Value::Array(rows));
    } else {
        for answer in answers {
            print_answer(answer)?;
        }
    }
    let silent = (answers.iter()).any(|a| matches!(a, NodeAnswer::NotAnswering(_)));
    Ok(match silent {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    })
}

/// One row of the JSON answer list (docs/protocol.md, "Control").
fn answer_json(answer: &NodeAnswer) -> serde_json::Value {
    let reply = match answer {
        NodeAnswer::NotAnswering(node) => {
            return serde_json::json!({"node": node, "answering": false})
        }
        NodeAnswer::Lost(node) => {
            return serde_json::json!({"node": node, "answering": false, "lost": true})
        }
        NodeAnswer::Answered(reply) => reply,
    };
    let body = match &reply.answer {
        Answer::Status(status) => serde_json::json!({"status": status}),
        Answer::Running { running, queued } => {
            serde_json::json!({"running": running, "queued": queued})
        }
        Answer::Reloaded { workers } => serde_json::json!({"reloaded": workers}),
        Answer::Registered { tasks } => serde_json::json!({"registered": tasks}),
        Answer::Cancelled { ids } => serde_json::json!({"cancelled": ids}),
        Answer::Refreshed => serde_json::json!({}),
    };
    let mut row = serde_json::json!({"node": reply.node, "answering": true});
    if let (Some(row), serde_json::Value::Object(body)) = (row.as_object_mut(), body) {
        row.extend(body);
    }
    row
}

fn print_answer(answer: &NodeAnswer) -> std::io::Result<()> {
    let reply = match answer {
        NodeAnswer::NotAnswering(node) => {
            say!("{node}: not answering");
            return Ok(());
        }
        NodeAnswer::Lost(node) => {
            say!("{node}: lost (no heartbeat; not asked)");
            return Ok(());
        }
        NodeAnswer::Answered(reply) => reply,
    };
    let node = &reply.node;
    match &reply.answer {
        Answer::Status(status) => print_status(status)?,
        Answer::Running { running, queued } => {
            for id in running {
                say!("{node} running {id}");
            }
            for id in queued {
                say!("{node} queued  {id}");
            }
        }
        Answer::Reloaded { workers } => say!("{node}: reloading {workers} worker(s)"),
        Answer::Registered { tasks } => {
            for task in tasks {
                say!("{node} {task}");
            }
        }
        Answer::Cancelled { ids } if ids.is_empty() => say!("{node}: nothing running to stop"),
        Answer::Cancelled { ids } => {
            for id in ids {
                say!("{node} stopped {id}");
            }
        }
        Answer::Refreshed => say!("{node}: ok"),
    }
    Ok(())
}

/// AWX's layout: a header per node, then a line per worker.
fn print_status(status: &NodeStatus) -> std::io::Result<()> {
    say!(
        "{}[pid:{}] workers total={} min={} max={} queued={} pool={} units={}/{}",
        status.node,
        status.pid,
        status.workers.len(),
        status.min_workers,
        status.max_workers,
        status.queued,
        status.pool,
        status.units_in_use,
        status.max_workers
    );
    let paused: Vec<&str> = (status.queues.iter())
        .filter(|(_, p)| **p)
        .map(|(q, _)| q.as_str())
        .collect();
    if !paused.is_empty() {
        say!("  paused queues: {}", paused.join(", "));
    }
    match &status.exclusive {
        Some(run) if run.running => say!("  exclusive: running {} {}", run.task, run.id),
        Some(run) => say!("  exclusive: draining for {} {}", run.task, run.id),
        None => {}
    }
    for worker in &status.workers {
        let who = match worker.pid {
            Some(pid) => format!("pid:{pid}"),
            None => format!("id:{}", worker.id),
        };
        let rss = worker.rss_bytes.map_or_else(
            || "-".to_owned(),
            |b| format!("{:.3}MB", b as f64 / 1_000_000.0),
        );
        let line = format!(
            ". worker[{who}] sent={} finished={} qsize={} rss={rss}",
            worker.sent, worker.finished, worker.queued
        );
        match &worker.current {
            None => say!("{line} [IDLE]"),
            Some(current) => {
                say!("{line}");
                let since = stevedore::admin::format::timestamp(current.since_ms);
                say!("  - running {} {} since {since}", current.id, current.shape);
            }
        }
    }
    Ok(())
}
