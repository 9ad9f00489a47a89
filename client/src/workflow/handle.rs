//! A submitted workflow: wait for its end, read its result, show or cancel it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::view::Stored;
use super::WorkflowView;
use crate::control::CancelSelector;
use crate::{Client, Error, Result};

/// A workflow submitted with [`Client::submit`] (or named by id with [`Client::workflow`]).
#[derive(Debug, Clone)]
pub struct WorkflowHandle {
    client: Client,
    id: String,
}

impl WorkflowHandle {
    pub(crate) fn new(client: Client, id: String) -> Self {
        Self { client, id }
    }

    /// The workflow id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `running`, `succeeded`, `failed` or `cancelled`; an unknown (or expired) workflow is an
    /// error.
    pub async fn status(&self) -> Result<String> {
        Ok(self.outcome().await?.0)
    }

    /// The status, the root's result and the root's error as stored.
    async fn outcome(&self) -> Result<(String, Option<Vec<u8>>, Option<Vec<u8>>)> {
        let (status, result, error) = match self.client.inline_workflow(&self.id) {
            Some(Some((status, result, error))) => (Some(status), result, error),
            Some(None) => (None, None, None),
            None => self.client.broker().workflow_outcome(&self.id).await?,
        };
        let status = status.ok_or_else(|| Error::NotFound {
            kind: "workflow",
            name: self.id.escape_debug().to_string(),
            hint: "never submitted here, or expired with its records".into(),
        })?;
        Ok((status, result, error))
    }

    /// `None` while it runs; the result once it succeeded (its root's result: a chain's last
    /// step's, a group's list); [`Error::WorkflowFailed`] once it failed or was cancelled.
    pub async fn result(&self) -> Result<Option<rmpv::Value>> {
        let (status, result, error) = self.outcome().await?;
        let decode = |bytes: Vec<u8>| {
            rmpv::decode::read_value(&mut bytes.as_slice()).map_err(|e| Error::Decode {
                what: format!("the result of workflow {}", self.id),
                reason: e.to_string(),
            })
        };
        match status.as_str() {
            "running" => Ok(None),
            "succeeded" => Ok(Some(decode(result.unwrap_or_default())?)),
            _ => {
                let error = match error.map(decode).transpose()? {
                    Some(map) => failure_text(&map),
                    None => "nothing failed; it was stopped before its end".to_owned(),
                };
                Err(Error::WorkflowFailed {
                    id: self.id.clone(),
                    status,
                    error,
                })
            }
        }
    }

    /// Waits until the workflow ends (woken by its done list, no polling) and returns its
    /// result, as [`WorkflowHandle::result`]; [`Error::WorkflowTimeout`] after `timeout`.
    pub async fn wait(&self, timeout: Duration) -> Result<rmpv::Value> {
        let started = Instant::now();
        loop {
            if let Some(value) = self.result().await? {
                return Ok(value);
            }
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Error::WorkflowTimeout {
                    id: self.id.clone(),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            // The list keeps its tokens: a workflow that ended and then went on (a failed step
            // requeued) is read again and waited on until the time is up.
            let woken = self.client.broker().wait_workflow(&self.id, left).await?;
            if woken && self.status().await? == "running" {
                tokio::time::sleep(left.min(Duration::from_millis(50))).await;
            }
        }
    }

    /// Cancels the workflow: nothing more of it is published, and its steps queued or
    /// running are cancelled as `stevedore cancel` does (waiting up to `timeout` for the
    /// nodes' answers). Returns the task ids of the steps cancelled.
    pub async fn cancel(&self, timeout: Duration) -> Result<Vec<String>> {
        let (status, ids) = self.client.broker().cancel_workflow(&self.id).await?;
        if status == "gone" {
            self.outcome().await?;
        }
        if !ids.is_empty() {
            (self.client)
                .cancel(CancelSelector::ids(ids.clone()), timeout)
                .await?;
        }
        Ok(ids)
    }

    /// The workflow's steps as they stand.
    pub async fn show(&self) -> Result<WorkflowView> {
        let broker = self.client.broker();
        let (graph, state) = broker.workflow_fields(&self.id).await?;
        if graph.is_empty() {
            self.outcome().await?;
        }
        let mut ids = Vec::new();
        for (field, value) in &state {
            if let (Some(index), b"q") = (field.strip_prefix("s:"), value.as_slice()) {
                let node = graph
                    .get(index)
                    .map(|n| String::from_utf8_lossy(n).into_owned());
                let node: Option<serde_json::Value> =
                    node.and_then(|n| serde_json::from_str(&n).ok());
                if let Some(id) = node.as_ref().and_then(|n| n["id"].as_str()) {
                    ids.push(id.to_owned());
                }
            }
        }
        let mut records = BTreeMap::new();
        for id in ids {
            let record = self.client.task(&id).await?;
            records.insert(id, record.state());
        }
        let status = String::from_utf8_lossy(state.get("status").map_or(&b""[..], |s| s));
        let stored = Stored {
            graph,
            state: state.clone(),
            records,
        };
        Ok(WorkflowView {
            id: self.id.clone(),
            status: status.into_owned(),
            root: stored.step(0)?,
        })
    }
}

/// An error map (`step`, `task`, `id`, `state`, `error`) as one line.
fn failure_text(map: &rmpv::Value) -> String {
    let field = |name: &str| {
        (map.as_map().into_iter().flatten())
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_default()
    };
    format!(
        "step {} (task {}, id {}) {}: {}",
        field("step"),
        field("task"),
        field("id"),
        field("state"),
        field("error")
    )
}
