//! The producer's handle: publish tasks, read their records, wait for them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::{Broker, BrokerConfig, QueueInfo};
use crate::control::{CancelRecord, CancelSelector, Command, NodeAnswer, Request, Target};
use crate::handle::TaskHandle;
use crate::signing::Purpose;
use crate::workflow::{Plan, Workflow, WorkflowHandle, DEFAULT_TTL};
use crate::{Destination, Error, Message, PublishOptions, Result, TaskRecord};

/// How to reach Redis: URL, namespace and timeouts.
pub type ClientConfig = BrokerConfig;

/// The counts of one queue.
pub type QueueStats = QueueInfo;

/// Publishes tasks and reads what became of them. Cheap to clone; clones share connections.
///
/// ```no_run
/// # async fn run() -> stevedore::Result<()> {
/// use stevedore::{Client, PublishOptions};
///
/// let client = Client::connect("redis://127.0.0.1:6379", "stevedore").await?;
/// // Any task by name (a stub does this for a #[task] of this crate).
/// let message = Client::message("stevedore.echo", vec![1.into()], Default::default(),
///     &PublishOptions::new().notify(true))?;
/// let handle = client.publish(message).await?;
/// let record = handle.wait(std::time::Duration::from_secs(30)).await?;
/// println!("{} {}", handle.id(), record.state().as_str());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) broker: Broker,
    /// A fake client's store of what was published (`Client::fake`).
    pub(crate) fake: Option<Arc<crate::fake::Published>>,
}

impl Client {
    /// Connects to `url` (`redis://HOST:PORT[/DB]`, `unix:///PATH`) under `namespace`.
    ///
    /// A bad URL or an unreachable Redis is one clear [`Error`], within a few seconds.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::with_config(ClientConfig::new(url, namespace)).await
    }

    /// Connects as the `stevedore` CLI does, from the environment: see
    /// [`BrokerConfig::from_env`].
    ///
    /// ```no_run
    /// # async fn run() -> stevedore::Result<()> {
    /// let client = stevedore::Client::from_env().await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_env() -> Result<Self> {
        Self::with_config(ClientConfig::from_env()).await
    }

    /// Connects with every setting given.
    pub async fn with_config(config: ClientConfig) -> Result<Self> {
        Ok(Self {
            broker: Broker::connect(config).await?,
            fake: None,
        })
    }

    /// The broker underneath, for the worker and tools.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Builds a message for task `name` from dynamic arguments (what the CLI and other
    /// languages do); `#[task]` stubs build typed ones.
    pub fn message(
        name: &str,
        args: Vec<rmpv::Value>,
        kwargs: BTreeMap<String, rmpv::Value>,
        options: &PublishOptions,
    ) -> Result<Message> {
        options.message(name, None, args, kwargs)
    }

    /// Publishes one message.
    pub async fn publish(&self, message: Message) -> Result<TaskHandle> {
        let mut handles = self.publish_many(vec![message]).await?;
        Ok(handles.remove(0))
    }

    /// Publishes many messages in one pipelined round trip.
    ///
    /// A message with an on_duplicate policy that finds a duplicate is dropped; its handle says
    /// so ([`TaskHandle::discarded`]).
    ///
    /// When Redis takes only part of the batch (out of memory, a refused command), the error is
    /// [`Error::PartlyPublished`], naming the ids taken and the ids refused; when the connection
    /// fails with the batch on its way, [`Error::PublishUnconfirmed`] (their fate is unknown).
    pub async fn publish_many(&self, mut messages: Vec<Message>) -> Result<Vec<TaskHandle>> {
        messages.iter().try_for_each(check_waitable)?;
        if let Some(store) = &self.fake {
            return Ok(self.publish_without_redis(store, messages).await);
        }
        let _sending = crate::trace::sending(messages.iter_mut());
        let published = self.broker.enqueue(&messages).await?;
        count_published(&messages, &published);
        if published.contains(&false) {
            let dropped = (messages.iter().zip(&published)).filter(|(_, p)| !**p);
            self.broker
                .record_discarded(dropped.map(|(m, _)| m))
                .await?;
        }
        Ok(messages
            .into_iter()
            .zip(published)
            .map(|(m, published)| {
                let notify = m.wants_notify();
                let policy = m.record_policy();
                TaskHandle::new(self, m.id, Some(notify), !published).keeping(policy)
            })
            .collect())
    }

    /// Submits a workflow: stores it and publishes its first steps; the workers publish each
    /// next step when the steps before it are recorded (see [`crate::workflow`]).
    pub async fn submit(&self, workflow: impl Into<Workflow>) -> Result<WorkflowHandle> {
        let workflow = workflow.into();
        if let Some(fake) = &self.fake {
            return fake.keep_workflow(self, &workflow).await;
        }
        let broker = &self.broker;
        let seal = |bytes| broker.seal_as(Purpose::WorkflowStep, bytes);
        let plan = Plan::compile(&seal, &workflow)?;
        broker
            .store_workflow(&plan.id, &plan.fields, DEFAULT_TTL)
            .await?;
        let joined = broker.start_workflow(&plan.id, DEFAULT_TTL).await?;
        broker.publish_joined(&[joined], DEFAULT_TTL).await?;
        Ok(WorkflowHandle::new(self.clone(), plan.id))
    }

    /// A handle on workflow `id`, submitted before (by this process or another).
    pub fn workflow(&self, id: impl Into<String>) -> WorkflowHandle {
        WorkflowHandle::new(self.clone(), id.into())
    }

    /// What is recorded about task `id`.
    pub async fn task(&self, id: &str) -> Result<TaskRecord> {
        if let Some(record) = self.inline_record(id) {
            return Ok(record);
        }
        self.real("read a task's record")?;
        self.broker.task_record(id).await
    }

    /// Every queue with its counts.
    pub async fn queues(&self) -> Result<Vec<QueueStats>> {
        self.broker.queues().await
    }

    /// A handle for a task published elsewhere (an id kept in a database, say), typed by what
    /// the task returns: `client.handle::<u64>(id).get(timeout)`. Waiting on it is woken when
    /// the task was published with `notify`, and reads the record with a growing pause
    /// otherwise.
    pub fn handle<T>(&self, id: impl Into<String>) -> TaskHandle<T> {
        TaskHandle::new(self, id.into(), None, false)
    }
}

/// Remote control of worker nodes.
impl Client {
    /// Sends `command` to `target` and collects the answers until `timeout`; nodes that do not
    /// answer in time are reported as such. [`Target::All`] means the nodes live now (with a
    /// heartbeat younger than the config's `lost_after`): a node
    /// that stopped is not asked, and a lost one is reported [`NodeAnswer::Lost`] at once,
    /// not waited for.
    pub async fn control(
        &self,
        target: Target,
        command: Command,
        timeout: Duration,
    ) -> Result<Vec<NodeAnswer>> {
        let (expected, lost) = match &target {
            Target::All => self.live_and_lost_nodes().await?,
            Target::Node(node) => (vec![node.clone()], Vec::new()),
        };
        let id = uuid::Uuid::new_v4().to_string();
        let deadline = Instant::now() + timeout;
        let request = Request {
            reply_to: self.broker.keys().reply(&id),
            id,
            target,
            command,
            deadline_ms: crate::now_ms() + timeout.as_millis() as u64,
        };
        self.broker.send_control(&request).await?;
        let replies = self
            .broker
            .collect_replies(&request.reply_to, expected.len(), deadline)
            .await?;
        let answered = |node: &String| replies.iter().any(|r| &r.node == node);
        let mut answers: Vec<NodeAnswer> = (expected.iter().filter(|node| !answered(node)))
            .map(|node| NodeAnswer::NotAnswering(node.clone()))
            .chain(
                lost.into_iter()
                    .filter(|node| !answered(node))
                    .map(NodeAnswer::Lost),
            )
            .collect();
        answers.extend(replies.into_iter().map(NodeAnswer::Answered));
        answers.sort_by(|a, b| answer_node(a).cmp(answer_node(b)));
        Ok(answers)
    }

    /// The names of the nodes with a live process now (a heartbeat younger than the config's
    /// `lost_after`), sorted: the nodes a broadcast published now reaches.
    pub async fn live_nodes(&self) -> Result<Vec<String>> {
        Ok(self.live_and_lost_nodes().await?.0)
    }

    /// The nodes with a live process, and those whose every process is lost (reaped within the
    /// retention, or not yet): the same list as [`crate::admin::Admin::nodes`].
    async fn live_and_lost_nodes(&self) -> Result<(Vec<String>, Vec<String>)> {
        let lost_after = self.broker.config().lost_after;
        let nodes = crate::admin::node_views(&self.broker, lost_after).await?;
        Ok(crate::admin::split_live_and_lost(&nodes))
    }

    /// Cancels tasks: stored durably (queued and delayed ones are skipped when reached), and
    /// every node stops the ones it runs. A selector naming nothing in particular is refused.
    pub async fn cancel(
        &self,
        selector: CancelSelector,
        timeout: Duration,
    ) -> Result<Vec<NodeAnswer>> {
        if !selector.is_specific() {
            return Err(Error::InvalidOptions(
                "a cancel must name task ids or a task name; cancelling everything is refused"
                    .into(),
            ));
        }
        let now = crate::now_ms();
        let record = CancelRecord {
            selector: selector.clone(),
            at_ms: now,
            until_ms: now + CANCEL_TTL.as_millis() as u64,
        };
        let record_id = uuid::Uuid::new_v4().to_string();
        self.broker.store_cancel(&record_id, &record).await?;
        self.control(Target::All, Command::Cancel(selector), timeout)
            .await
    }

    /// Pauses (`true`) or resumes a queue for the whole cluster; returns once the nodes have
    /// taken it in (or `timeout` passed).
    pub async fn pause_queue(
        &self,
        queue: &Destination,
        paused: bool,
        timeout: Duration,
    ) -> Result<Vec<NodeAnswer>> {
        self.broker.set_paused(queue, paused).await?;
        self.control(Target::All, Command::Refresh, timeout).await
    }
}

/// Node health.
impl Client {
    /// Every worker process that has a heartbeat, with whether it is lost (`lost_after`: the
    /// grace period; workers use 15 s by default).
    pub async fn nodes(&self, lost_after: Duration) -> Result<Vec<crate::nodes::NodeHealth>> {
        self.broker.nodes(lost_after).await
    }

    /// The live node with the most free capacity (AWX's choice of execution node), if any node
    /// has room.
    pub async fn least_busy_node(&self, lost_after: Duration) -> Result<Option<String>> {
        let nodes = self.nodes(lost_after).await?;
        Ok(nodes
            .iter()
            .filter(|n| n.free() > 0)
            .max_by_key(|n| (n.free(), std::cmp::Reverse(n.beat.node.clone())))
            .map(|n| n.beat.node.clone()))
    }
}

/// How long a cancel record lasts: a task reached later than this runs.
pub const CANCEL_TTL: Duration = Duration::from_secs(86_400);

fn answer_node(answer: &NodeAnswer) -> &str {
    match answer {
        NodeAnswer::Answered(reply) => &reply.node,
        NodeAnswer::NotAnswering(node) | NodeAnswer::Lost(node) => node,
    }
}

/// Schedules (fired by `beat`).
impl Client {
    /// Creates or replaces schedule `schedule` (its expression is checked first); it is due
    /// next after now, unless paused.
    pub async fn put_schedule(&self, schedule: &crate::schedule::Schedule) -> Result<()> {
        crate::queue::validate_name("schedule", &schedule.name)?;
        Destination::from_wire_name(&schedule.queue)?;
        schedule.timing.validate()?;
        let next = if schedule.paused {
            None
        } else {
            schedule
                .timing
                .next_after(schedule.created_at, crate::now_ms())?
        };
        self.broker.put_schedule(schedule, next).await
    }

    /// Every schedule with its next due time. An entry that does not decode is skipped with
    /// an error log (the CLI's `schedule list` reports it by name).
    pub async fn schedules(&self) -> Result<Vec<(crate::schedule::Schedule, Option<u64>)>> {
        let (schedules, unreadable) = self.broker.schedules().await?;
        for (name, error) in unreadable {
            tracing::error!(schedule = %name.escape_debug(), %error, "a stored schedule does not decode; skipped");
        }
        Ok(schedules)
    }

    /// Schedule `name` with its next due time.
    pub async fn schedule(
        &self,
        name: &str,
    ) -> Result<Option<(crate::schedule::Schedule, Option<u64>)>> {
        self.broker.schedule(name).await
    }

    /// Removes schedule `name`; returns whether it existed.
    pub async fn remove_schedule(&self, name: &str) -> Result<bool> {
        self.broker.remove_schedule(name).await
    }

    /// Pauses (`true`) or resumes schedule `name`; a resumed schedule is due next after now.
    /// Returns whether it existed.
    pub async fn pause_schedule(&self, name: &str, paused: bool) -> Result<bool> {
        let Some((mut schedule, _)) = self.schedule(name).await? else {
            return Ok(false);
        };
        schedule.paused = paused;
        self.put_schedule(&schedule).await?;
        Ok(true)
    }
}

/// Counts the messages Redis took, by queue: `stevedore_published_total{queue}`, recorded
/// through the `metrics` facade into whatever recorder the process installed (the worker's
/// `--http`, an app's own exporter). One increment per run of same-queue messages: a batch to
/// one queue costs one label.
fn count_published(messages: &[Message], published: &[bool]) {
    let mut taken = messages.iter().zip(published).filter(|(_, p)| **p);
    let Some((first, _)) = taken.next() else {
        return;
    };
    let (mut queue, mut count) = (&first.queue, 1u64);
    for (message, _) in taken {
        if message.queue == *queue {
            count += 1;
            continue;
        }
        metrics::counter!("stevedore_published_total", "queue" => queue.clone()).increment(count);
        (queue, count) = (&message.queue, 1);
    }
    metrics::counter!("stevedore_published_total", "queue" => queue.clone()).increment(count);
}

/// Refuses a message whose waiters would never be woken: `notify` on a task whose record
/// policy keeps no record of a success.
fn check_waitable(message: &Message) -> Result<()> {
    let policy = message.record_policy();
    if message.wants_notify() && !policy.records_success() {
        return Err(Error::InvalidOptions(format!(
            "task `{}` is published with notify but record `{}`: a waiter would never see its success; publish it with record `all`, or without notify",
            message.task,
            policy.as_str()
        )));
    }
    Ok(())
}
