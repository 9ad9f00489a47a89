//! Workflows: chains, groups, chords and on_success / on_failure / always links, whose joins
//! happen in Redis, exactly once, when a step's outcome is recorded.
//!
//! 1. A [`Signature`] is a task call not yet published (`add::sig((1, 2))`, or
//!    [`Signature::new`] by name); a [`Workflow`] nests signatures in chains, groups and chords
//!    and hangs links on any of them.
//! 2. [`crate::Client::submit`] compiles the workflow into a flat graph (`compile`), stores it
//!    with every step's message sealed, and publishes the first steps; the workers do the rest:
//!    each step's outcome is joined by one script in the workflow's slot, which publishes what
//!    became ready (see `broker/workflows.rs` and docs/decisions.md "Workflows").
//! 3. Results flow as in Celery: a chain passes each result as the first argument of the next
//!    step unless that step is immutable; a group's result is the list of its members'
//!    results in member order, which a chord's callback receives; an on_success link receives
//!    the result, an on_failure link the error map (`step`, `task`, `id`, `state`, `error`),
//!    an always link `{"state": ..., "result" | "error": ...}`.
//! 4. A [`WorkflowHandle`] waits for the end (woken by the workflow's done list), reads the
//!    result, shows the steps, cancels.
//!
//! ```text
//!   step:  (not started) --start--> q --outcome--> ok | failed
//!                                   q --cancel (not yet published)--> cancelled
//!                                   failed --outcome ok (requeued from the dead letters)--> ok
//!   workflow: running --no task step left--> succeeded | failed | cancelled
//!             (running again if a failed step is requeued and continues it)
//! ```

mod compile;
mod handle;
mod inline;
mod json;
mod view;

pub(crate) use inline::{run_workflow, Ended};

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Message, PublishOptions, Result, TaskOptions};

pub(crate) use compile::Plan;
pub use handle::WorkflowHandle;
pub use view::{StepView, WorkflowView};

/// How long a workflow's keys live when submitted, and after each step's join the workers'
/// record TTL (a day by default): a workflow expires with its records.
pub const DEFAULT_TTL: Duration = Duration::from_secs(86_400);

/// A task call not yet published: the task, its arguments and its publish options.
#[derive(Debug, Clone)]
pub struct Signature {
    task: String,
    args: Vec<rmpv::Value>,
    kwargs: BTreeMap<String, rmpv::Value>,
    options: PublishOptions,
    defaults: TaskOptions,
    immutable: bool,
    /// Why its arguments could not be encoded, reported at submit.
    invalid: Option<String>,
}

impl Signature {
    /// A call of task `task` by name with these arguments (what other languages and the CLI
    /// do; `#[task]` generates typed `sig` and `partial` functions).
    pub fn new(
        task: impl Into<String>,
        args: Vec<rmpv::Value>,
        kwargs: BTreeMap<String, rmpv::Value>,
    ) -> Self {
        Self::of_task(task.into(), TaskOptions::new(), args, kwargs)
    }

    /// A call with the task's own options as defaults (the `#[task]` stubs).
    pub fn of_task(
        task: String,
        defaults: TaskOptions,
        args: Vec<rmpv::Value>,
        kwargs: BTreeMap<String, rmpv::Value>,
    ) -> Self {
        Self {
            task,
            args,
            kwargs,
            options: PublishOptions::new(),
            defaults,
            immutable: false,
            invalid: None,
        }
    }

    /// A step whose arguments could not be encoded: submitting it fails with `error`.
    pub(crate) fn invalid(task: &str, error: String) -> Self {
        Self {
            invalid: Some(error),
            ..Self::new(task, Vec::new(), BTreeMap::new())
        }
    }

    /// Publishes the step with these options (queue, retries, time limits...). `id` sets the
    /// step's task id; `on_duplicate` and broadcasts are refused in workflows.
    pub fn options(mut self, options: PublishOptions) -> Self {
        self.options = options;
        self
    }

    /// The step ignores what comes before it: it gets exactly its own arguments.
    pub fn immutable(mut self) -> Self {
        self.immutable = true;
        self
    }

    /// The task name.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// This step, then `next` once it succeeded (with its result unless `next` is immutable).
    pub fn on_success(self, next: impl Into<Workflow>) -> Workflow {
        Workflow::from(self).on_success(next)
    }

    /// This step, then `handler` if it failed (with the error map unless immutable).
    pub fn on_failure(self, handler: impl Into<Workflow>) -> Workflow {
        Workflow::from(self).on_failure(handler)
    }

    /// This step, then `next` once it ended either way (with the outcome unless immutable).
    pub fn always(self, next: impl Into<Workflow>) -> Workflow {
        Workflow::from(self).always(next)
    }

    /// The step's message as it will be published, before its input is put first.
    fn message(&self) -> Result<Message> {
        if let Some(error) = &self.invalid {
            return Err(crate::Error::InvalidWorkflow(format!(
                "step `{}`: {error}",
                self.task
            )));
        }
        let mut message = crate::__private::build_message(
            &self.task,
            &self.defaults,
            self.args.clone(),
            &self.options,
        )?;
        message.kwargs = self.kwargs.clone();
        if message.eta.is_some() {
            return Err(crate::Error::InvalidWorkflow(format!(
                "step `{}` has a delay or eta; a step starts when it becomes ready \
                 (put a delay inside the task, or schedule the workflow's submit)",
                self.task
            )));
        }
        Ok(message)
    }
}

/// A workflow: one step, or steps in a chain, a group or a chord, each with optional links.
#[derive(Debug, Clone)]
pub struct Workflow {
    shape: Shape,
    on_success: Option<Box<Workflow>>,
    on_failure: Option<Box<Workflow>>,
    always: Option<Box<Workflow>>,
}

#[derive(Debug, Clone)]
enum Shape {
    Step(Box<Signature>),
    Chain(Vec<Workflow>),
    Group(Vec<Workflow>),
    Chord(Vec<Workflow>, Box<Workflow>),
}

impl From<Signature> for Workflow {
    fn from(signature: Signature) -> Self {
        Self::of(Shape::Step(Box::new(signature)))
    }
}

impl Workflow {
    /// The message of each task step, in the order they appear (a step's children, then its
    /// links): what a fake client keeps for a submitted workflow.
    pub(crate) fn step_messages(&self) -> Result<Vec<Message>> {
        let mut messages = match &self.shape {
            Shape::Step(signature) => vec![signature.message()?],
            Shape::Chain(steps) | Shape::Group(steps) => {
                let each: Result<Vec<Vec<Message>>> =
                    steps.iter().map(Self::step_messages).collect();
                each?.concat()
            }
            Shape::Chord(members, callback) => {
                let each: Result<Vec<Vec<Message>>> =
                    members.iter().map(Self::step_messages).collect();
                let mut all = each?.concat();
                all.extend(callback.step_messages()?);
                all
            }
        };
        for link in [&self.on_success, &self.on_failure, &self.always]
            .into_iter()
            .flatten()
        {
            messages.extend(link.step_messages()?);
        }
        Ok(messages)
    }

    fn of(shape: Shape) -> Self {
        Self {
            shape,
            on_success: None,
            on_failure: None,
            always: None,
        }
    }

    /// Steps one after the other, each getting the previous one's result first.
    pub fn chain<W: Into<Workflow>>(steps: impl IntoIterator<Item = W>) -> Self {
        Self::of(Shape::Chain(steps.into_iter().map(Into::into).collect()))
    }

    /// Steps at once; the group's result is the list of theirs, in member order.
    pub fn group<W: Into<Workflow>>(members: impl IntoIterator<Item = W>) -> Self {
        Self::of(Shape::Group(members.into_iter().map(Into::into).collect()))
    }

    /// A group, then `callback` with the list of its results once every member succeeded.
    /// If a member fails, the callback does not run; the chord's `on_failure` link does.
    pub fn chord<W: Into<Workflow>>(
        members: impl IntoIterator<Item = W>,
        callback: impl Into<Workflow>,
    ) -> Self {
        let members = members.into_iter().map(Into::into).collect();
        Self::of(Shape::Chord(members, Box::new(callback.into())))
    }

    /// Runs `next` once this part succeeded, with its result (unless `next` is immutable).
    pub fn on_success(mut self, next: impl Into<Workflow>) -> Self {
        self.on_success = Some(Box::new(next.into()));
        self
    }

    /// Runs `handler` if this part failed, with the error map (unless immutable).
    pub fn on_failure(mut self, handler: impl Into<Workflow>) -> Self {
        self.on_failure = Some(Box::new(handler.into()));
        self
    }

    /// Runs `next` once this part ended either way, with `{"state", "result" | "error"}`.
    pub fn always(mut self, next: impl Into<Workflow>) -> Self {
        self.always = Some(Box::new(next.into()));
        self
    }

    /// The workflow a JSON description gives (the shape `stevedore workflow submit` reads;
    /// docs/protocol.md "Workflows").
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        json::from_json(value)
    }
}
