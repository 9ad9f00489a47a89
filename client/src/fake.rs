//! Testing code that publishes, without Redis (Sidekiq's `Testing.fake!`, Celery's mocked
//! `apply_async`): [`Client::fake`] keeps every message it is asked to publish, in order, and
//! [`Client::published`] hands them back.
//!
//! ```
//! use stevedore::{Client, PublishOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> stevedore::Result<()> {
//! let client = Client::fake();
//! let options = PublishOptions::new().queue("mail");
//! let message = Client::message("mail.send", vec!["ada@example.com".into()], Default::default(), &options)?;
//! client.publish(message).await?;
//! let published = client.published();
//! assert_eq!((published[0].task.as_str(), published[0].queue.as_str()), ("mail.send", "mail"));
//! client.clear();
//! assert!(client.published().is_empty());
//! # Ok(()) }
//! ```
//!
//! 1. No network, no redis-server, no worker: publishing only checks and builds the messages
//!    as a real client does (names, options, sizes), then keeps them; `#[task]` stubs
//!    (`delay`, `apply_async`) and `publish_many` go through the same door.
//! 2. A submitted workflow keeps the message of each of its task steps, in the order they
//!    appear (steps, then links); nothing runs.
//! 3. What needs Redis (waiting on a handle, the operator API, schedules) fails with one
//!    line saying the client is fake: a fake client never pretends a task ran.

use std::sync::{Arc, Mutex};

use crate::broker::{Broker, BrokerConfig};
use crate::workflow::{Workflow, WorkflowHandle};
use crate::{Client, Message, Result, TaskHandle};

/// Where a fake client's connections would go: nowhere (any use fails at once, one line).
const NOWHERE: &str = "unix:///nonexistent/stevedore-fake-client-has-no-redis.sock";

/// What a fake client was asked to publish; an inline client's records too.
#[derive(Debug, Default)]
pub(crate) struct Published(Mutex<Vec<Message>>, Option<Arc<crate::inline::Records>>);

impl Published {
    /// An inline client's records of what it ran.
    pub(crate) fn records(&self) -> Option<&Arc<crate::inline::Records>> {
        self.1.as_ref()
    }

    /// Keeps `messages` and returns their handles.
    pub(crate) fn keep(&self, client: &Client, messages: Vec<Message>) -> Vec<TaskHandle> {
        let handles = (messages.iter())
            .map(|m| TaskHandle::new(client, m.id.clone(), Some(m.wants_notify()), false))
            .collect();
        self.lock().extend(messages);
        handles
    }

    /// Keeps the message of each task step of `workflow` (running the workflow first, for an
    /// inline client) and returns a handle on it.
    pub(crate) async fn keep_workflow(
        &self,
        client: &Client,
        workflow: &Workflow,
    ) -> Result<WorkflowHandle> {
        let id = uuid::Uuid::new_v4().to_string();
        match self.records() {
            Some(records) => {
                let ended = crate::workflow::run_workflow(client, records, workflow, None).await?;
                records.ended(id.clone(), &ended);
            }
            None => {
                let messages = workflow.step_messages()?;
                self.lock().extend(messages);
            }
        }
        Ok(WorkflowHandle::new(client.clone(), id))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Message>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Client {
    /// A client that keeps what it is asked to publish in memory instead of sending it: for
    /// testing code that publishes, with no Redis (see [`Client::published`]). A plain
    /// constructor: no `await`, nothing to connect.
    pub fn fake() -> Self {
        Self::without_redis(Published::default())
    }

    /// A client that runs each task it publishes in this process, as soon as it is
    /// published, and keeps the records in memory: handles behave as usual (`get` returns the
    /// result or [`crate::Error::Task`]). Like [`Client::fake`], it needs no Redis and no
    /// worker, and keeps what it published. Retries run at once; tasks published by a task
    /// run too; a workflow runs to its end when it is submitted.
    pub fn inline() -> Self {
        Self::without_redis(Published(Mutex::default(), Some(Arc::default())))
    }

    fn without_redis(store: Published) -> Self {
        let config = BrokerConfig::new(NOWHERE, "stevedore");
        let broker =
            Broker::unconnected(config, false).expect("the fake client's fixed URL parses");
        Self {
            broker,
            fake: Some(Arc::new(store)),
        }
    }

    /// Keeps `messages` (a fake client), running each first (an inline one).
    pub(crate) async fn publish_without_redis(
        &self,
        store: &Published,
        messages: Vec<Message>,
    ) -> Vec<TaskHandle> {
        if let Some(records) = store.records() {
            for message in &messages {
                Box::pin(crate::inline::run(self, records, message)).await;
            }
        }
        store.keep(self, messages)
    }

    /// An inline client's outcome of workflow `id`: `None` for any other client, `Some(None)`
    /// when it never ran here.
    pub(crate) fn inline_workflow(
        &self,
        id: &str,
    ) -> Option<Option<crate::inline::WorkflowOutcome>> {
        let records = self.fake.as_ref()?.records()?;
        Some(records.workflow(id))
    }

    /// An inline client's record of task `id`; `None` for any other client.
    pub(crate) fn inline_record(&self, id: &str) -> Option<crate::TaskRecord> {
        let records = self.fake.as_ref()?.records()?;
        Some(records.get(id))
    }

    /// Whether this client is fake ([`Client::fake`]).
    pub fn is_fake(&self) -> bool {
        self.fake.is_some()
    }

    /// The messages a fake client was asked to publish, in order (each with its task name in
    /// `.task`, its arguments and options); empty for a real client.
    pub fn published(&self) -> Vec<Message> {
        self.fake
            .as_ref()
            .map(|f| f.lock().clone())
            .unwrap_or_default()
    }

    /// `Ok` for a real client; for a fake one, the error of doing `what` (it needs Redis).
    pub(crate) fn real(&self, what: &'static str) -> Result<()> {
        match &self.fake {
            Some(store) if store.records().is_none() => Err(crate::Error::FakeClient(what)),
            _ => Ok(()),
        }
    }

    /// Forgets what a fake client was asked to publish.
    pub fn clear(&self) {
        if let Some(fake) = &self.fake {
            fake.lock().clear();
        }
    }
}
