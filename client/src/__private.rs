//! Support for the code `#[task]` generates. Not public API: it may change in any release.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use futures_util::future::BoxFuture;
pub use inventory;
pub use rmpv::Value;
pub use tokio::task::spawn_blocking;

use crate::{Client, Message, PublishOptions, Result, TaskError, TaskHandle};

/// A value that can travel as a task argument or result.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task argument or result: it must implement serde's `Serialize` and `DeserializeOwned`",
    label = "not serializable",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it, and use owned types (`String`, not `&str`)"
)]
pub trait TaskValue: Sized {
    /// Encodes the value as MessagePack, structs as maps with named fields.
    fn to_value(&self) -> Result<rmpv::Value, String>;
    /// Decodes the value from MessagePack.
    fn from_value(value: rmpv::Value) -> Result<Self, String>;
}

// Not a supertrait bound: a blanket impl makes a missing derive one error, not two.
impl<T: Serialize + DeserializeOwned> TaskValue for T {
    fn to_value(&self) -> Result<rmpv::Value, String> {
        // rmpv's own serializer writes structs as positional arrays; go through rmp-serde's
        // named form so other languages see field names.
        let bytes = rmp_serde::to_vec_named(self).map_err(|e| e.to_string())?;
        rmpv::decode::read_value(&mut bytes.as_slice()).map_err(|e| e.to_string())
    }

    fn from_value(value: rmpv::Value) -> Result<Self, String> {
        rmpv::ext::from_value(value).map_err(|e| without_values(&e.to_string()))
    }
}

/// A decode error that names what was expected and what kind of value was found, never the
/// value itself (arguments may hold secrets, and decode errors reach logs and records):
/// serde's `invalid type: string "hunter2", expected u32` becomes `expected u32, found a
/// string`. Messages that name only the schema (`missing field `x``) are kept.
pub fn without_values(error: &str) -> String {
    let error = error
        .strip_prefix("error while decoding value: ")
        .unwrap_or(error);
    let expected = error.rsplit_once("expected ").map(|(_, what)| what.trim());
    let found = ["invalid type: ", "invalid value: "]
        .iter()
        .find_map(|prefix| error.strip_prefix(prefix))
        .map(|rest| {
            let kinds = [
                "string",
                "integer",
                "floating point",
                "boolean",
                "map",
                "sequence",
                "byte array",
                "unit value",
                "char",
                "option",
                "newtype struct",
                "enum",
            ];
            kinds
                .iter()
                .find(|kind| rest.starts_with(*kind))
                .map_or("another kind of value", |kind| kind)
        });
    match (found, expected) {
        (Some(found), Some(expected)) => {
            let article = match found.starts_with(['a', 'e', 'i', 'o', 'u']) {
                true => "an",
                false => "a",
            };
            format!("expected {expected}, found {article} {found}")
        }
        _ if error.starts_with("missing field `") || error.starts_with("duplicate field `") => {
            error.to_owned()
        }
        (None, Some(expected)) if error.starts_with("invalid length ") => {
            format!("wrong number of elements, expected {expected}")
        }
        (None, Some(expected)) if error.starts_with("unknown ") => {
            format!("unknown name, expected {expected}")
        }
        _ => "the value does not decode into the parameter's type (not shown)".to_owned(),
    }
}

/// Encodes one argument for the message.
pub fn encode_arg<T: TaskValue>(task: &str, name: &str, value: &T) -> Result<rmpv::Value> {
    value.to_value().map_err(|e| crate::Error::Encode {
        what: format!("argument `{name}` of task `{task}`"),
        reason: e.to_string(),
    })
}

/// Builds the message the stub publishes: the call's options, else the task's. The task's retry
/// budget and backoff are written into the message, so that whoever settles it (a reaper on a
/// node that does not link the task, a worker of another version) uses the task's own.
pub fn build_message(
    task: &str,
    defaults: &crate::TaskOptions,
    args: Vec<rmpv::Value>,
    options: &PublishOptions,
) -> Result<Message> {
    let mut message = options.message_with(
        task,
        defaults.default_queue,
        defaults.on_duplicate,
        args,
        BTreeMap::new(),
    )?;
    message.retries = message.retries.or(defaults.retries);
    message.backoff = message.backoff.or(defaults.backoff_ms);
    message.max_backoff = message.max_backoff.or(defaults.max_backoff_ms);
    if options.record_policy().is_none() && defaults.record != crate::RecordPolicy::All {
        message.record = Some(defaults.record);
    }
    if defaults.exclusive && options.exclusive_unset() {
        // An exclusive task is taken ahead of the others of its queue: its first lane.
        let lane = crate::Destination::from_wire_name(&message.queue)?.first_lane();
        if let Some(lane) = lane {
            message.queue = lane.wire_name();
        }
    }
    Ok(message)
}

/// The stub's workflow step: the call's encoded arguments, or why they could not be encoded
/// (reported when the workflow is submitted).
pub fn signature(
    task: &str,
    defaults: crate::TaskOptions,
    args: Result<Vec<rmpv::Value>>,
) -> crate::Signature {
    match args {
        Ok(args) => crate::Signature::of_task(task.to_owned(), defaults, args, BTreeMap::new()),
        Err(error) => crate::Signature::invalid(task, error.to_string()),
    }
}

/// Publishes the stub's message.
pub async fn publish<T>(client: &Client, message: Message) -> Result<TaskHandle<T>> {
    Ok(client.publish(message).await?.typed())
}

/// The arguments of one invocation, taken one parameter at a time by the generated handler.
pub struct Arguments {
    task: &'static str,
    positional: std::vec::IntoIter<rmpv::Value>,
    kwargs: BTreeMap<String, rmpv::Value>,
}

impl Arguments {
    /// Checks the argument count against the task's `arity` and prepares to decode them.
    pub fn new(
        task: &'static str,
        arity: usize,
        args: Vec<rmpv::Value>,
        kwargs: BTreeMap<String, rmpv::Value>,
    ) -> Result<Self, TaskError> {
        if args.len() > arity {
            return Err(TaskError::fatal(format!(
                "task `{task}` takes {arity} argument(s) but {} were given",
                args.len()
            )));
        }
        Ok(Self {
            task,
            positional: args.into_iter(),
            kwargs,
        })
    }

    /// Decodes the next parameter, from the next positional argument or else from `kwargs`.
    pub fn take<T: TaskValue>(&mut self, name: &str) -> Result<T, TaskError> {
        let value = match self.positional.next() {
            Some(value) => {
                if self.kwargs.contains_key(name) {
                    return Err(TaskError::fatal(format!(
                        "task `{}`: argument `{name}` given both by position and by name",
                        self.task
                    )));
                }
                value
            }
            None => self.kwargs.remove(name).ok_or_else(|| {
                TaskError::fatal(format!("task `{}`: missing argument `{name}`", self.task))
            })?,
        };
        T::from_value(value).map_err(|e| {
            TaskError::fatal(format!(
                "task `{}`: argument `{name}` has the wrong type: {e}",
                self.task
            ))
        })
    }

    /// Fails on keyword arguments that match no parameter.
    pub fn finish(self) -> Result<(), TaskError> {
        match self.kwargs.keys().next() {
            Some(unknown) => Err(TaskError::fatal(format!(
                "task `{}` has no parameter `{unknown}`",
                self.task
            ))),
            None => Ok(()),
        }
    }
}

/// Turns what a task body returned into the recorded outcome.
pub trait IntoOutcome {
    /// The encoded result, or the task's error.
    fn into_outcome(self) -> Result<rmpv::Value, TaskError>;
}

/// Marks a body that returns a plain value (not a `Result`).
pub struct Plain<T>(pub T);

impl<T: TaskValue> IntoOutcome for Plain<T> {
    fn into_outcome(self) -> Result<rmpv::Value, TaskError> {
        encode_result(&self.0)
    }
}

impl<T: TaskValue, E: Into<TaskError>> IntoOutcome for std::result::Result<T, E> {
    fn into_outcome(self) -> Result<rmpv::Value, TaskError> {
        match self {
            Ok(value) => encode_result(&value),
            Err(error) => Err(error.into()),
        }
    }
}

fn encode_result<T: TaskValue>(value: &T) -> Result<rmpv::Value, TaskError> {
    value
        .to_value()
        .map_err(|e| TaskError::fatal(format!("cannot encode the task's result: {e}")))
}

/// Turns a panic or abort of a blocking task into a task error.
pub fn join_error(error: tokio::task::JoinError) -> TaskError {
    match error.try_into_panic() {
        Ok(panic) => TaskError::new(format!("task panicked: {}", panic_message(&panic))),
        Err(_) => TaskError::cancelled(),
    }
}

/// The message of a panic payload, when it is a string.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_name_types_never_values() {
        let decode = |value: rmpv::Value| u32::from_value(value).unwrap_err();
        assert_eq!(decode("SECRET-XYZ".into()), "expected u32, found a string");
        assert_eq!(decode((-5).into()), "expected u32, found an integer");
        assert_eq!(
            decode(rmpv::Value::Array(vec!["SECRET".into()])),
            "expected u32, found a sequence"
        );
        let opaque = without_values("custom check failed for SECRET");
        assert!(!opaque.contains("SECRET"), "{opaque}");
        assert_eq!(without_values("missing field `id`"), "missing field `id`");
    }
}
