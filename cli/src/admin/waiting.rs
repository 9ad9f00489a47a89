//! `enqueue --wait`: waits for each task (for a broadcast, for each node live when it was
//! published) and reports it: as text (`RESULT` per task, `NODE: RESULT` per node of a
//! broadcast, failures on stderr), or with `--json` as one object per task and line:
//! `{"id", "discarded": false, "state", "result", "error"}`, and for a broadcast `"nodes":
//! {NODE: {"state", "result", "error"}}` (`state` `missing` for a node with no outcome in time).

use std::process::ExitCode;
use std::time::Duration;

use stevedore::{RunRecord, TaskHandle, TaskRecord, TaskState};

use super::format::value_to_json;

/// A run as JSON: `{"state", "result", "error"}`; `missing` when there is none.
fn run_json(run: Option<&RunRecord>) -> serde_json::Value {
    match run {
        Some(run) => serde_json::json!({
            "state": run.state.as_str(), "result": run.result, "error": run.error,
        }),
        None => serde_json::json!({"state": "missing", "result": null, "error": null}),
    }
}

fn exit_code(all_succeeded: bool) -> ExitCode {
    match all_succeeded {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

/// Waits for each task and reports it; fails when one did not succeed.
pub async fn wait_for_all(
    handles: Vec<TaskHandle>,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut all_succeeded = true;
    for handle in handles {
        let record = handle.wait(timeout).await?;
        let run = record.runs.values().next();
        let state = record.state();
        all_succeeded &= state == TaskState::Succeeded;
        if json {
            let mut row = run_json(run);
            row["id"] = handle.id().into();
            row["discarded"] = false.into();
            say!("{row}");
        } else if let (TaskState::Succeeded, Some(run)) = (state, run) {
            say!(
                "{}",
                value_to_json(run.result.as_ref().unwrap_or(&rmpv::Value::Nil))
            );
        } else {
            let error = run
                .and_then(|r| r.error.as_deref())
                .unwrap_or("no error recorded");
            eprintln!("task {} {}: {error}", handle.id(), state.as_str());
        }
    }
    Ok(exit_code(all_succeeded))
}

/// Waits for every node's run of each broadcast and reports each; fails when a run did not
/// succeed or a node did not finish in time.
pub async fn wait_for_broadcasts(
    handles: Vec<TaskHandle>,
    nodes: &[String],
    timeout: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut all_succeeded = true;
    for handle in handles {
        let record = handle.wait_for_nodes(nodes, timeout).await?;
        let run_of = |node: &String| record.runs.get(&TaskRecord::broadcast_field(node));
        all_succeeded &= (nodes.iter().map(run_of))
            .all(|run| run.is_some_and(|r| r.state == TaskState::Succeeded));
        if json {
            let per_node: serde_json::Map<String, serde_json::Value> = (nodes
                .iter()
                .map(|node| (node.clone(), run_json(run_of(node)))))
            .collect();
            let row = serde_json::json!({"id": handle.id(), "discarded": false,
                "state": record.state().as_str(), "nodes": per_node});
            say!("{row}");
            continue;
        }
        for node in nodes {
            report_node(&handle, node, run_of(node), timeout)?;
        }
    }
    Ok(exit_code(all_succeeded))
}

/// `NODE: RESULT` on stdout, or what went wrong on stderr.
fn report_node(
    handle: &TaskHandle,
    node: &str,
    run: Option<&RunRecord>,
    timeout: Duration,
) -> std::io::Result<()> {
    match run {
        Some(run) if run.state == TaskState::Succeeded => {
            let result = run.result.as_ref().unwrap_or(&rmpv::Value::Nil);
            say!("{node}: {}", value_to_json(result));
        }
        Some(run) if run.state.is_final() => {
            let error = run.error.as_deref().unwrap_or("no error recorded");
            eprintln!(
                "task {} on {node} {}: {error}",
                handle.id(),
                run.state.as_str()
            );
        }
        _ => eprintln!(
            "task {} on {node}: no outcome within {timeout:?}",
            handle.id()
        ),
    }
    Ok(())
}
