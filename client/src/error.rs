//! The error type of the client library.

/// What can go wrong when talking to stevedore's Redis or building a message.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Redis URL does not parse.
    #[error(
        "invalid redis URL `{url}`: {reason}; expected redis[s]://HOST:PORT[/DB], unix:///PATH, redis[s]+sentinel://H:P,H:P/MASTER or redis[s]+cluster://H:P,H:P"
    )]
    InvalidUrl {
        /// The URL, with any password masked.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// Redis could not be reached or refused to talk.
    #[error("cannot reach redis at {url}: {reason}; {}", unreachable_hint(reason))]
    Unreachable {
        /// The URL, with any password masked.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// A command failed after the connection was up (redis-rs says what failed).
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// A value could not be encoded as MessagePack.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The encoder's message.
        reason: String,
    },
    /// Bytes read from Redis are not what stevedore wrote.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The decoder's message.
        reason: String,
    },
    /// A name (queue, node, namespace, task) is not allowed.
    #[error("invalid {kind} name `{name}`: {reason}")]
    InvalidName {
        /// Which kind of name.
        kind: &'static str,
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A schedule's expression or settings are unusable.
    #[error("invalid schedule: {0}")]
    InvalidSchedule(String),
    /// A fake client ([`crate::Client::fake`]) was asked for what needs Redis.
    #[error("cannot {0}: this is a fake client (Client::fake), which keeps what is published and runs nothing")]
    FakeClient(&'static str),
    /// Publish options that contradict each other.
    #[error("invalid publish options: {0}")]
    InvalidOptions(String),
    /// A message is larger than the configured limit.
    #[error("task `{task}` not published: its message is {size} bytes, over the {limit}-byte limit; pass large data by reference (a URL, a key) instead")]
    PayloadTooLarge {
        /// The task name.
        task: String,
        /// The encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A setting (from code, a file or the environment) is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A message's signature is missing or wrong (signing keys are configured).
    #[error(transparent)]
    Signature(#[from] crate::signing::SignatureError),
    /// The task ended without succeeding (from [`crate::TaskHandle::get`]).
    #[error(transparent)]
    Task(#[from] crate::TaskFailure),
    /// A workflow description or call cannot be submitted as it is.
    #[error("invalid workflow: {0}")]
    InvalidWorkflow(String),
    /// The workflow ended without succeeding (from [`crate::WorkflowHandle::wait`]).
    #[error("workflow {id} {status}: {error}")]
    WorkflowFailed {
        /// The workflow's id.
        id: String,
        /// `failed` or `cancelled`.
        status: String,
        /// What failed: the first failing step's task, id and error.
        error: String,
    },
    /// Waiting for a workflow to end ran out of time.
    #[error("workflow {id} did not finish within {waited_ms} ms")]
    WorkflowTimeout {
        /// The workflow's id.
        id: String,
        /// How long we waited.
        waited_ms: u64,
    },
    /// Waiting for a task's outcome ran out of time.
    #[error("task {id} did not finish within {waited_ms} ms")]
    Timeout {
        /// The task's id.
        id: String,
        /// How long we waited.
        waited_ms: u64,
    },
    /// Redis refused part of a batch (out of memory, a command refused): the tasks in
    /// `published` are queued (or were dropped as duplicates), those in `not_published` are not.
    #[error(
        "{} of {} task(s) not published ({} were): {cause}",
        not_published.len(),
        published.len() + not_published.len(),
        published.len()
    )]
    PartlyPublished {
        /// Ids Redis took.
        published: Vec<String>,
        /// Ids Redis refused: safe to publish again.
        not_published: Vec<String>,
        /// The first refusal, one line.
        cause: String,
    },
    /// An operator named something that does not exist: a queue, node, task, schedule,
    /// limit, workflow or dead letter (the command line exits non-zero, the dashboard answers
    /// 404).
    #[error("no {kind} `{name}`: {hint}")]
    NotFound {
        /// What kind of thing (`queue`, `task`, ...).
        kind: &'static str,
        /// The name given (escaped).
        name: String,
        /// Why there is none, and where to look.
        hint: String,
    },
    /// The connection failed while a batch was on its way: its tasks may or may not be queued.
    #[error(
        "{} task(s) may or may not be queued (the connection failed with the batch on its way; \
         check before publishing them again): {cause}",
        unconfirmed.len()
    )]
    PublishUnconfirmed {
        /// The ids of the batch.
        unconfirmed: Vec<String>,
        /// What failed.
        cause: String,
    },
}

/// The result type of the client library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether Redis refused the credentials (a wrong user or password, none given): waiting
    /// will not mend that, unlike a server that is down.
    pub fn is_refused_credentials(&self) -> bool {
        matches!(self, Self::Unreachable { reason, .. } if refused_credentials(reason))
    }
}

/// Whether what a connection attempt said is a refusal of its credentials.
fn refused_credentials(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    ["noauth", "wrongpass", "authentication", "invalid password"]
        .iter()
        .any(|s| reason.contains(s))
}

/// What to check when Redis cannot be reached, judged from what the attempt said.
fn unreachable_hint(reason: &str) -> &'static str {
    if refused_credentials(reason) {
        "check the user and password (in the URL, STEVEDORE_REDIS_USERNAME, \
         STEVEDORE_REDIS_PASSWORD[_FILE]; STEVEDORE_SENTINEL_PASSWORD for the sentinels)"
    } else if reason.contains("certificate") {
        "check that STEVEDORE_REDIS_CA_FILE names the CA that signed the server's certificate"
    } else {
        "is redis-server running there?"
    }
}
