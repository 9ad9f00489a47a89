//! Running a workflow in this process, for [`crate::Client::inline`]: the tree walked depth
//! first with the workers' rules: a step gets the result before it first (unless immutable),
//! a chain passes each result on and stops at a failure, a group runs every member and gives
//! the list of their results (failed when one failed), a chord's callback gets its group's
//! list; `on_success` gets the result, `on_failure` the failure map (`{"step", "task", "id",
//! "state", "error"}`), `always` `{"state", "result" | "error"}`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Shape, Workflow};
use crate::inline::{run, Records};
use crate::{Client, Result, TaskState};

/// How a part of a workflow ended: its result, or the failure map of its first failed step.
pub(crate) enum Ended {
    Succeeded(rmpv::Value),
    Failed(rmpv::Value),
}

type Boxed<'a> = Pin<Box<dyn Future<Output = Result<Ended>> + Send + 'a>>;

/// Runs `workflow` with `input` (the result before it, if any), then its links.
pub(crate) fn run_workflow<'a>(
    client: &'a Client,
    records: &'a Arc<Records>,
    workflow: &'a Workflow,
    input: Option<rmpv::Value>,
) -> Boxed<'a> {
    Box::pin(async move {
        let ended = match &workflow.shape {
            Shape::Step(signature) => {
                let mut message = signature.message()?;
                if let (false, Some(input)) = (signature.immutable, input) {
                    message.args.insert(0, input);
                }
                run(client, records, &message).await;
                let record = records.get(&message.id);
                let run = record.task_run();
                match run.filter(|r| r.state == TaskState::Succeeded) {
                    Some(run) => Ended::Succeeded(run.result.clone().unwrap_or(rmpv::Value::Nil)),
                    None => Ended::Failed(failure(&message, run)),
                }
            }
            Shape::Chain(steps) => {
                let mut value = input;
                let mut ended = Ended::Succeeded(rmpv::Value::Nil);
                for step in steps {
                    ended = run_workflow(client, records, step, value.take()).await?;
                    match &ended {
                        Ended::Succeeded(result) => value = Some(result.clone()),
                        Ended::Failed(_) => break,
                    }
                }
                ended
            }
            Shape::Group(members) => group(client, records, members, input).await?,
            Shape::Chord(members, callback) => {
                match group(client, records, members, input).await? {
                    Ended::Succeeded(list) => {
                        run_workflow(client, records, callback, Some(list)).await?
                    }
                    failed => failed,
                }
            }
        };
        links(client, records, workflow, &ended).await?;
        Ok(ended)
    })
}

/// Every member with the same input; the list of their results, or the first failure.
async fn group(
    client: &Client,
    records: &Arc<Records>,
    members: &[Workflow],
    input: Option<rmpv::Value>,
) -> Result<Ended> {
    let mut results = Vec::new();
    let mut failed = None;
    for member in members {
        match run_workflow(client, records, member, input.clone()).await? {
            Ended::Succeeded(value) => results.push(value),
            Ended::Failed(map) => failed = failed.or(Some(map)),
        }
    }
    Ok(failed.map_or(Ended::Succeeded(rmpv::Value::Array(results)), Ended::Failed))
}

/// Runs the links `ended` calls for.
async fn links(
    client: &Client,
    records: &Arc<Records>,
    workflow: &Workflow,
    ended: &Ended,
) -> Result<()> {
    let (on_success, on_failure) = match ended {
        Ended::Succeeded(result) => (Some(result.clone()), None),
        Ended::Failed(map) => (None, Some(map.clone())),
    };
    if let (Some(link), Some(result)) = (&workflow.on_success, on_success) {
        run_workflow(client, records, link, Some(result)).await?;
    }
    if let (Some(link), Some(map)) = (&workflow.on_failure, on_failure) {
        run_workflow(client, records, link, Some(map)).await?;
    }
    if let Some(link) = &workflow.always {
        let said = match ended {
            Ended::Succeeded(result) => {
                map(&[("state", "succeeded".into()), ("result", result.clone())])
            }
            Ended::Failed(error) => map(&[("state", "failed".into()), ("error", error.clone())]),
        };
        run_workflow(client, records, link, Some(said)).await?;
    }
    Ok(())
}

/// The failure map of the step `message` whose run (if any) did not succeed.
fn failure(message: &crate::Message, run: Option<&crate::RunRecord>) -> rmpv::Value {
    let state = run.map_or("failed", |r| r.state.as_str());
    let error = run.and_then(|r| r.error.clone()).unwrap_or_default();
    map(&[
        ("step", message.task.clone().into()),
        ("task", message.task.clone().into()),
        ("id", message.id.clone().into()),
        ("state", state.into()),
        ("error", error.into()),
    ])
}

fn map(pairs: &[(&str, rmpv::Value)]) -> rmpv::Value {
    rmpv::Value::Map(
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect(),
    )
}
