//! Per-call publish options: `add::apply_async(&client, (1, 2), PublishOptions::new().queue("io"))`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Destination, Error, Message, OnDuplicate, Result, MESSAGE_VERSION};

/// Options for one publish; anything left unset falls back to the task's attribute, then to
/// the `default` queue.
///
/// ```no_run
/// # use std::time::Duration;
/// # #[stevedore::task]
/// # async fn charge(cents: u64) {}
/// # async fn run(client: &stevedore::Client) -> stevedore::Result<()> {
/// use stevedore::{OnDuplicate, PublishOptions};
///
/// let options = PublishOptions::new()
///     .queue("billing")
///     .delay(Duration::from_secs(30))
///     .retries(5)
///     .backoff(Duration::from_secs(1), Duration::from_secs(60))
///     .timeout(Duration::from_secs(120))
///     .on_duplicate(OnDuplicate::Discard)
///     .notify(true);
/// charge::apply_async(client, (500,), options).await?;
/// # Ok(()) }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    queue: Option<String>,
    node: Option<String>,
    broadcast: bool,
    id: Option<String>,
    notify: bool,
    timeout: Option<Duration>,
    hard_timeout: Option<Duration>,
    retries: Option<u32>,
    backoff: Option<(Duration, Duration)>,
    start: Option<Start>,
    expires: Option<Start>,
    on_duplicate: Option<OnDuplicate>,
    headers: BTreeMap<String, String>,
    impact: Option<u32>,
    exclusive: Option<bool>,
    limit: Option<String>,
    record: Option<crate::RecordPolicy>,
}

/// When a delayed task becomes due.
#[derive(Debug, Clone, Copy)]
enum Start {
    After(Duration),
    At(u64),
}

impl PublishOptions {
    /// No options: the task's own defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publish to this shared queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Publish to this node's own queue: only that node runs it.
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Publish to every live node: each runs it once.
    pub fn broadcast(mut self) -> Self {
        self.broadcast = true;
        self
    }

    /// Publish to `destination` (instead of the task's default queue).
    pub fn to(self, destination: Destination) -> Self {
        match destination {
            Destination::Queue(queue) => self.queue(queue.as_str()),
            Destination::Node(node) => self.node(node.as_str()),
            Destination::Broadcast => self.broadcast(),
        }
    }

    /// Use this task id instead of a fresh UUID (it must be a UUID).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Ask the worker to wake [`crate::TaskHandle::wait`] callers when the task ends.
    pub fn notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// Soft time limit of one run: the task's cancellation token fires, and the run is recorded
    /// `timed_out` if it then stops.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Hard time limit of one run: the run is aborted (a process-pool child is killed).
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.hard_timeout = Some(timeout);
        self
    }

    /// Retries after a failed attempt (overrides the task's `retries`).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Retry delays: `first`, doubling each retry (with jitter), never above `max`.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = Some((first, max.max(first)));
        self
    }

    /// Run it no sooner than `delay` from now (Celery's `countdown`).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.start = Some(Start::After(delay));
        self
    }

    /// Run it no sooner than `eta_ms`, in milliseconds since the Unix epoch.
    pub fn eta(mut self, eta_ms: u64) -> Self {
        self.start = Some(Start::At(eta_ms));
        self
    }

    /// Expire it if no worker has started it within `after` from now (Celery's `expires`):
    /// it is then recorded `expired` and never run.
    pub fn expires(mut self, after: Duration) -> Self {
        self.expires = Some(Start::After(after));
        self
    }

    /// Expire it if no worker has started it by `at_ms` (milliseconds since the Unix epoch).
    pub fn expires_at(mut self, at_ms: u64) -> Self {
        self.expires = Some(Start::At(at_ms));
        self
    }

    /// What to do if the same task with the same arguments is already queued or running
    /// (overrides the task's `on_duplicate`).
    pub fn on_duplicate(mut self, policy: OnDuplicate) -> Self {
        self.on_duplicate = Some(policy);
        self
    }

    /// Adds a free-form header to the message.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Where the message goes: per-call choice, else the task's default queue, else `default`.
    pub fn destination(&self, task_default_queue: Option<&str>) -> Result<Destination> {
        let chosen = [self.queue.is_some(), self.node.is_some(), self.broadcast];
        if chosen.iter().filter(|c| **c).count() > 1 {
            return Err(Error::InvalidOptions(
                "choose at most one of queue, node and broadcast".into(),
            ));
        }
        if self.broadcast {
            return Ok(Destination::Broadcast);
        }
        if let Some(node) = &self.node {
            return Destination::node(node);
        }
        Destination::queue(
            self.queue
                .as_deref()
                .or(task_default_queue)
                .unwrap_or("default"),
        )
    }

    /// The task id to use: the one given (checked to be a UUID) or a fresh one.
    pub fn task_id(&self) -> Result<String> {
        match &self.id {
            Some(id) => uuid::Uuid::parse_str(id)
                .map(|u| u.hyphenated().to_string())
                .map_err(|e| Error::InvalidOptions(format!("task id `{id}` is not a UUID: {e}"))),
            None => Ok(uuid::Uuid::new_v4().hyphenated().to_string()),
        }
    }

    /// Builds the message of one call of `task` with these options; `task_default_queue` is
    /// the queue named on the task's attribute, if any.
    pub fn message(
        &self,
        task: &str,
        task_default_queue: Option<&str>,
        args: Vec<rmpv::Value>,
        kwargs: BTreeMap<String, rmpv::Value>,
    ) -> Result<Message> {
        self.message_with(
            task,
            task_default_queue,
            OnDuplicate::Parallel,
            args,
            kwargs,
        )
    }

    /// As [`PublishOptions::message`], with the task's own `on_duplicate` policy.
    pub fn message_with(
        &self,
        task: &str,
        task_default_queue: Option<&str>,
        task_on_duplicate: OnDuplicate,
        args: Vec<rmpv::Value>,
        kwargs: BTreeMap<String, rmpv::Value>,
    ) -> Result<Message> {
        if task.is_empty() {
            return Err(Error::InvalidName {
                kind: "task",
                name: String::new(),
                reason: "it is empty",
            });
        }
        let now = crate::now_ms();
        let eta = match self.start {
            Some(Start::After(delay)) if !delay.is_zero() => Some(now + delay.as_millis() as u64),
            Some(Start::At(at)) if at > now => Some(at),
            _ => None,
        };
        let ms = |d: Duration| d.as_millis() as u64;
        let mut message = Message {
            v: MESSAGE_VERSION,
            id: self.task_id()?,
            task: task.to_owned(),
            args,
            kwargs,
            queue: self
                .placed(self.destination(task_default_queue)?)
                .wire_name(),
            published_at: now,
            eta,
            retries: self.retries,
            tried: 0,
            timeout: self.timeout.map(ms),
            hard_timeout: self.hard_timeout.map(ms),
            backoff: self.backoff.map(|(first, _)| ms(first)),
            max_backoff: self.backoff.map(|(_, max)| ms(max)),
            headers: self.headers(),
            expires: self.expires.map(|e| match e {
                Start::After(after) => now.saturating_add(ms(after)),
                Start::At(at) => at,
            }),
            impact: self.impact,
            exclusive: self.exclusive,
            limit: self.limit.clone(),
            record: self.record.filter(|&p| p != crate::RecordPolicy::All),
            id_given: self.id.is_some(),
        };
        self.check_placement()?;
        let policy = self.on_duplicate.unwrap_or(task_on_duplicate);
        if policy != OnDuplicate::Parallel {
            if message.is_broadcast() {
                return Err(Error::InvalidOptions(format!(
                    "on_duplicate {policy} does not apply to broadcasts"
                )));
            }
            let key = crate::dedup::dedup_key(&message)?;
            message
                .headers
                .insert(crate::dedup::POLICY_HEADER.into(), policy.as_str().into());
            message.headers.insert(crate::dedup::KEY_HEADER.into(), key);
        }
        Ok(message)
    }

    /// Units of a node's capacity the run takes (at least 1): a node runs it only where that
    /// many of its `--max-workers` units are free.
    pub fn impact(mut self, units: u32) -> Self {
        self.impact = Some(units);
        self
    }

    /// Whether the run has its node to itself: the node lets its running tasks finish, takes
    /// nothing else, runs this one alone, then resumes.
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = Some(exclusive);
        self
    }

    /// Runs it under the named limit (`stevedore limit set NAME ...`) instead of the task's
    /// own.
    pub fn limit(mut self, name: impl Into<String>) -> Self {
        self.limit = Some(name.into());
        self
    }

    /// Which of the call's runs leave a record (the task's own policy otherwise; by default
    /// all). A policy that keeps no record of a success cannot go with `notify`.
    pub fn record(mut self, policy: crate::RecordPolicy) -> Self {
        self.record = Some(policy);
        self
    }

    /// The record policy chosen for the call, if any.
    pub fn record_policy(&self) -> Option<crate::RecordPolicy> {
        self.record
    }

    /// The impact chosen for the call, if any.
    pub fn impact_units(&self) -> Option<u32> {
        self.impact
    }

    /// Where an exclusive call goes: its shared queue's first lane (taken before the queue's
    /// other tasks); any other call, where it was sent.
    fn placed(&self, destination: Destination) -> Destination {
        match (self.exclusive, destination.first_lane()) {
            (Some(true), Some(lane)) => lane,
            _ => destination,
        }
    }

    /// Whether the call says nothing about exclusivity (the task's own then holds).
    pub(crate) fn exclusive_unset(&self) -> bool {
        self.exclusive.is_none()
    }

    fn check_placement(&self) -> Result<()> {
        if self.impact == Some(0) {
            return Err(Error::InvalidOptions(
                "an impact of 0 units is not allowed: every run takes at least 1".into(),
            ));
        }
        if let Some(name) = &self.limit {
            crate::limits::validate_limit_name(name)?;
        }
        Ok(())
    }

    /// The headers to put on the message, `notify` included when asked for.
    pub fn headers(&self) -> BTreeMap<String, String> {
        let mut headers = self.headers.clone();
        if self.notify {
            headers.insert(crate::Message::NOTIFY_HEADER.into(), "1".into());
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_defaults_to_the_task_queue_then_default() {
        let o = PublishOptions::new();
        assert_eq!(
            o.destination(None).unwrap(),
            Destination::queue("default").unwrap()
        );
        assert_eq!(
            o.destination(Some("io")).unwrap(),
            Destination::queue("io").unwrap()
        );
        let o = PublishOptions::new().node("n1");
        assert_eq!(
            o.destination(Some("io")).unwrap(),
            Destination::node("n1").unwrap()
        );
    }

    #[test]
    fn two_destinations_are_refused() {
        let o = PublishOptions::new().node("n1").broadcast();
        assert!(o.destination(None).is_err());
    }

    #[test]
    fn a_task_id_must_be_a_uuid() {
        assert!(PublishOptions::new().id("nope").task_id().is_err());
        let id = "0B7C1B0E-6A8E-4A43-9D1B-1F5F6F2F0A11";
        assert_eq!(
            PublishOptions::new().id(id).task_id().unwrap(),
            id.to_lowercase()
        );
    }
}
