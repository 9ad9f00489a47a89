//! Compiling a [`Workflow`] into the flat graph `scripts/workflow.lua` walks.
//!
//! 1. Every part becomes a numbered node: the root is 0, then depth first; a chord is a chain
//!    of its group and its callback (shown as a chord).
//! 2. Each node is stored as a small JSON object (field `IDX`), a group's member list apart
//!    (field `m:IDX`, read only when the group starts or ends, so a member's join costs the
//!    same in a group of 10 or 10,000), and each task step's message sealed (field `t:IDX`),
//!    with the `workflow` header naming its step.
//! 3. Everything a workflow cannot run is refused here, in one line: an empty chain or group,
//!    a broadcast step, an on_duplicate policy, a delayed step, two steps with one task id.

use std::collections::HashSet;

use serde::Serialize;

use super::{Shape, Workflow};
use crate::broker::{StepRef, WORKFLOW_HEADER};
use crate::{Error, Result};

/// A compiled workflow: its id and the graph's fields.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The workflow id.
    pub id: String,
    /// The graph hash's fields.
    pub fields: Vec<(String, Vec<u8>)>,
}

/// One node as stored (see `scripts/workflow.lua` for the fields).
#[derive(Debug, Default, Serialize)]
struct Node {
    k: &'static str,
    p: i64,
    #[serde(skip_serializing_if = "is_zero")]
    i: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    c: Vec<usize>,
    #[serde(skip_serializing_if = "is_zero")]
    n: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    f: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    im: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// `chord` for a chain that is a chord (for showing it).
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<&'static str>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Seals a step's encoded message for storage (signs it when signing keys are set).
pub(crate) type Seal<'b> = &'b dyn Fn(Vec<u8>) -> Vec<u8>;

struct Compiler<'b> {
    seal: Seal<'b>,
    id: String,
    nodes: Vec<Node>,
    fields: Vec<(String, Vec<u8>)>,
    ids: HashSet<String>,
}

impl Plan {
    /// Compiles `workflow` under a new id, each step's message sealed by `seal`.
    pub fn compile(seal: Seal<'_>, workflow: &Workflow) -> Result<Self> {
        let mut compiler = Compiler {
            seal,
            id: uuid::Uuid::new_v4().hyphenated().to_string(),
            nodes: Vec::new(),
            fields: Vec::new(),
            ids: HashSet::new(),
        };
        compiler.add(workflow, -1, 0)?;
        let Compiler {
            id,
            nodes,
            mut fields,
            ..
        } = compiler;
        for (index, node) in nodes.iter().enumerate() {
            let json = serde_json::to_vec(node).map_err(|e| Error::Encode {
                what: "a workflow node".into(),
                reason: e.to_string(),
            })?;
            fields.push((index.to_string(), json));
        }
        Ok(Self { id, fields })
    }
}

impl Compiler<'_> {
    /// Adds `part` (and what hangs from it) under `parent` at `position`; returns its index.
    fn add(&mut self, part: &Workflow, parent: i64, position: usize) -> Result<usize> {
        let index = self.nodes.len();
        self.nodes.push(Node {
            p: parent,
            i: position,
            ..Node::default()
        });
        match &part.shape {
            Shape::Step(signature) => self.step(index, signature)?,
            Shape::Chain(steps) => {
                let children = self.children(index, steps, "chain")?;
                self.nodes[index].k = "c";
                self.nodes[index].c = children;
            }
            Shape::Group(members) => self.group(index, members)?,
            Shape::Chord(members, callback) => {
                let group = self.nodes.len();
                self.nodes.push(Node {
                    p: index as i64,
                    i: 1,
                    ..Node::default()
                });
                self.group(group, members)?;
                let callback = self.add(callback, index as i64, 2)?;
                let node = &mut self.nodes[index];
                (node.k, node.c, node.x) = ("c", vec![group, callback], Some("chord"));
            }
        }
        let mut link = |link: &Option<Box<Workflow>>| -> Result<Option<usize>> {
            link.as_deref().map(|l| self.add(l, -1, 0)).transpose()
        };
        let (s, f, a) = (
            link(&part.on_success)?,
            link(&part.on_failure)?,
            link(&part.always)?,
        );
        let node = &mut self.nodes[index];
        (node.s, node.f, node.a) = (s, f, a);
        Ok(index)
    }

    /// Adds `steps` as the children of chain `index`, at positions from 1.
    fn children(&mut self, index: usize, steps: &[Workflow], what: &str) -> Result<Vec<usize>> {
        if steps.is_empty() {
            return Err(Error::InvalidWorkflow(format!(
                "a {what} needs at least one step"
            )));
        }
        let parent = index as i64;
        (steps.iter().enumerate())
            .map(|(k, step)| self.add(step, parent, k + 1))
            .collect()
    }

    /// Makes node `index` a group of `members`.
    fn group(&mut self, index: usize, members: &[Workflow]) -> Result<()> {
        let members = self.children(index, members, "group")?;
        for &member in &members {
            self.nodes[member].i = 0;
        }
        let list = serde_json::to_vec(&members).unwrap_or_default();
        self.fields.push((format!("m:{index}"), list));
        let node = &mut self.nodes[index];
        (node.k, node.n) = ("g", members.len());
        Ok(())
    }

    /// Makes node `index` the task step `signature`, its message sealed.
    fn step(&mut self, index: usize, signature: &super::Signature) -> Result<()> {
        let refuse = |what: &str| {
            Err(Error::InvalidWorkflow(format!(
                "step `{}` {what}",
                signature.task()
            )))
        };
        let mut message = signature.message()?;
        if message.is_broadcast() {
            return refuse("is a broadcast; a workflow step runs once, on one node");
        }
        if crate::dedup_policy(&message).is_some() || message.headers.contains_key("on_duplicate") {
            return refuse("has an on_duplicate policy; workflow steps cannot use one");
        }
        if !self.ids.insert(message.id.clone()) {
            return refuse(&format!("reuses task id {}", message.id));
        }
        let step = StepRef {
            workflow: self.id.clone(),
            index: index as u32,
        };
        (message.headers).insert(WORKFLOW_HEADER.into(), step.header_value());
        let sealed = (self.seal)(message.encode()?);
        self.fields.push((format!("t:{index}"), sealed));
        let node = &mut self.nodes[index];
        (node.k, node.im, node.id) = ("t", signature.immutable, Some(message.id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::Signature;

    fn sig(task: &str) -> Signature {
        Signature::new(task, vec![], Default::default())
    }

    fn node(plan: &Plan, index: usize) -> serde_json::Value {
        let field = plan.fields.iter().find(|(f, _)| *f == index.to_string());
        serde_json::from_slice(&field.expect("node stored").1).unwrap()
    }

    #[test]
    fn a_chord_is_a_chain_of_its_group_and_callback_with_members_listed_apart() {
        let chord = Workflow::chord([sig("a"), sig("b")], sig("c")).on_failure(sig("h"));
        let plan = Plan::compile(&|b| b, &chord).unwrap();
        assert_eq!(
            plan.fields
                .iter()
                .filter(|(f, _)| f.starts_with("t:"))
                .count(),
            4
        );
        let root = node(&plan, 0);
        assert_eq!(root["k"], "c");
        assert_eq!(root["x"], "chord");
        assert_eq!(root["c"], serde_json::json!([1, 4]));
        assert_eq!(root["f"], 5);
        assert_eq!(node(&plan, 1)["n"], 2);
        assert_eq!(node(&plan, 4)["i"], 2);
        let members = plan.fields.iter().find(|(f, _)| f == "m:1").unwrap();
        assert_eq!(members.1, b"[2,3]");
        assert_eq!(node(&plan, 5)["p"], -1);
    }

    #[test]
    fn empty_groups_broadcasts_and_reused_ids_are_refused_in_one_line() {
        let empty = Workflow::group(Vec::<Workflow>::new());
        let error = Plan::compile(&|b| b, &empty).unwrap_err().to_string();
        assert_eq!(error, "invalid workflow: a group needs at least one step");
        let broadcast = sig("a").options(crate::PublishOptions::new().broadcast());
        let error = Plan::compile(&|b| b, &broadcast.into()).unwrap_err();
        assert!(error.to_string().contains("is a broadcast"), "{error}");
        let id = "0b7c1b0e-6a8e-4a43-9d1b-1f5f6f2f0a11";
        let same = || sig("a").options(crate::PublishOptions::new().id(id));
        let error = Plan::compile(&|b| b, &Workflow::chain([same(), same()])).unwrap_err();
        assert!(error.to_string().contains("reuses task id"), "{error}");
    }
}
