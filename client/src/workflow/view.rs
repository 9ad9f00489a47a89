//! What `stevedore workflow show` prints: a workflow's steps as a tree, each with its task,
//! its arguments' shape (never their values), its state, and its result or error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Message, Result, TaskState};

/// A workflow as it stands.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowView {
    /// The workflow id.
    pub id: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// The root step, with everything under and after it.
    pub root: StepView,
}

/// One step of a workflow.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    /// Its index in the workflow's graph.
    pub index: usize,
    /// `task`, `chain`, `group` or `chord`.
    pub kind: String,
    /// The task name, for a task step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The task id, for a task step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `not started`, `waiting` (published, no worker started it), a task state (`running`,
    /// `retrying`, `dead`...), `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// The shape of its own arguments, e.g. `(int, str, list[3]; kwargs: user)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// Its result, once it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Its error map, once it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    /// The steps of a chain, group or chord, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<StepView>,
    /// Its links by kind: `on_success`, `on_failure`, `always`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, StepView>,
}

/// A stored node (see `compile.rs`).
#[derive(Debug, Deserialize)]
struct Node {
    k: String,
    #[serde(default)]
    c: Vec<usize>,
    s: Option<usize>,
    f: Option<usize>,
    a: Option<usize>,
    id: Option<String>,
    x: Option<String>,
}

/// What the view is built from: the graph and state hashes, and the task steps' records.
pub(super) struct Stored {
    pub graph: BTreeMap<String, Vec<u8>>,
    pub state: BTreeMap<String, Vec<u8>>,
    pub records: BTreeMap<String, TaskState>,
}

impl Stored {
    fn text(&self, field: &str) -> Option<String> {
        (self.state.get(field)).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn json(&self, field: &str) -> Option<serde_json::Value> {
        let bytes = self.state.get(field)?;
        let value = rmpv::decode::read_value(&mut bytes.as_slice()).ok()?;
        serde_json::to_value(&value).ok()
    }

    /// The tree under node `index`.
    pub fn step(&self, index: usize) -> Result<StepView> {
        let bytes = self.graph.get(&index.to_string()).ok_or_else(|| {
            crate::Error::InvalidWorkflow(format!("step {index} is missing from the graph"))
        })?;
        let node: Node = serde_json::from_slice(bytes).map_err(|e| crate::Error::Decode {
            what: format!("workflow step {index}"),
            reason: e.to_string(),
        })?;
        let members = self.graph.get(&format!("m:{index}"));
        let children: Vec<usize> = match members {
            Some(list) => serde_json::from_slice(list).unwrap_or_default(),
            None => node.c.clone(),
        };
        let kind = match (node.k.as_str(), node.x.as_deref()) {
            ("t", _) => "task",
            ("g", _) => "group",
            (_, Some("chord")) => "chord",
            _ => "chain",
        };
        let mut links = BTreeMap::new();
        for (name, link) in [
            ("on_success", node.s),
            ("on_failure", node.f),
            ("always", node.a),
        ] {
            if let Some(link) = link {
                links.insert(name.to_owned(), self.step(link)?);
            }
        }
        let message = (self.graph.get(&format!("t:{index}")))
            .and_then(|t| crate::signing::unwrap_unchecked(t).ok())
            .and_then(|bytes| Message::decode(&bytes).ok());
        Ok(StepView {
            index,
            kind: kind.to_owned(),
            task: message.as_ref().map(|m| m.task.clone()),
            args: message.as_ref().map(args_shape),
            state: self.state_of(index, node.id.as_deref()),
            id: node.id,
            result: self.json(&format!("r:{index}")),
            error: self.json(&format!("e:{index}")),
            children: (children.into_iter().map(|c| self.step(c))).collect::<Result<_>>()?,
            links,
        })
    }

    fn state_of(&self, index: usize, id: Option<&str>) -> String {
        let state = self.text(&format!("s:{index}"));
        match (state.as_deref(), id) {
            (None, _) => "not started".to_owned(),
            (Some("q"), Some(id)) => match self.records.get(id) {
                None | Some(TaskState::Pending) => "waiting".to_owned(),
                Some(state) => state.as_str().to_owned(),
            },
            (Some("q"), None) => "running".to_owned(),
            (Some("ok"), _) => "succeeded".to_owned(),
            (Some(other), _) => other.to_owned(),
        }
    }
}

/// The shape of a message's own arguments: types and sizes, never values.
fn args_shape(message: &Message) -> String {
    let args: Vec<String> = message.args.iter().map(shape).collect();
    let kwargs: Vec<&str> = message.kwargs.keys().map(String::as_str).collect();
    match kwargs.is_empty() {
        true => format!("({})", args.join(", ")),
        false => format!("({}; kwargs: {})", args.join(", "), kwargs.join(", ")),
    }
}

fn shape(value: &rmpv::Value) -> String {
    use rmpv::Value as V;
    match value {
        V::Nil => "nil".into(),
        V::Boolean(_) => "bool".into(),
        V::Integer(_) => "int".into(),
        V::F32(_) | V::F64(_) => "float".into(),
        V::String(_) => "str".into(),
        V::Binary(b) => format!("bytes[{}]", b.len()),
        V::Array(items) => format!("list[{}]", items.len()),
        V::Map(items) => format!("map[{}]", items.len()),
        V::Ext(..) => "ext".into(),
    }
}

impl WorkflowView {
    /// The tree as indented text, one step per line.
    pub fn render(&self) -> String {
        let mut out = format!("workflow {}  {}\n", self.id, self.status);
        render(&self.root, "", "", &mut out);
        out
    }
}

fn render(step: &StepView, indent: &str, label: &str, out: &mut String) {
    let mut line = format!("{indent}{label}{}", step.kind);
    if let Some(task) = &step.task {
        line = format!(
            "{indent}{label}{task}{}",
            step.args.as_deref().unwrap_or("")
        );
    }
    line.push_str(&format!("  [{}]", step.state));
    if let Some(id) = &step.id {
        line.push_str(&format!("  {id}"));
    }
    if let Some(result) = &step.result {
        line.push_str(&format!("  -> {}", short(result)));
    }
    if let Some(error) = &step.error {
        line.push_str(&format!("  !! {}", short(error)));
    }
    out.push_str(&line);
    out.push('\n');
    let deeper = format!("{indent}  ");
    for child in &step.children {
        render(child, &deeper, "", out);
    }
    for (name, link) in &step.links {
        render(link, &deeper, &format!("{name}: "), out);
    }
}

/// JSON text cut to one short line.
fn short(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}
