//! Tasks built into every worker, so the system can be tried and measured from the shell:
//! `stevedore.noop`, `stevedore.echo`, `stevedore.sleep`, `stevedore.fail`, and
//! `stevedore.command` (off unless the node allows programs).

use std::time::Duration;

use stevedore::__private::{Arguments, BoxFuture};
use stevedore::{Invocation, TaskError, TaskKind, TaskOptions, TaskRegistration};

type Outcome = BoxFuture<'static, Result<rmpv::Value, TaskError>>;

const HERE: &str = concat!(file!(), ":", line!());

macro_rules! builtin {
    ($name:literal, $handler:ident, uses_context: $uses_context:literal) => {
        stevedore::__private::inventory::submit! {
            TaskRegistration::new(
                $name,
                TaskKind::Async,
                TaskOptions { uses_context: $uses_context, ..TaskOptions::new() },
                $handler,
                HERE,
            )
        }
    };
}

builtin!("stevedore.noop", noop, uses_context: false);
builtin!("stevedore.echo", echo, uses_context: false);
builtin!("stevedore.sleep", sleep, uses_context: true);
builtin!("stevedore.fail", fail, uses_context: false);
builtin!("stevedore.command", command, uses_context: true);

pub mod command;

/// Does nothing and returns nil: the cost of the machinery alone.
fn noop(_: Invocation) -> Outcome {
    Box::pin(async { Ok(rmpv::Value::Nil) })
}

/// Returns its positional arguments as an array. It has no named parameters, so a keyword
/// argument fails it, by the protocol's rule for a kwarg that names no parameter.
fn echo(invocation: Invocation) -> Outcome {
    Box::pin(async move {
        if let Some(name) = invocation.kwargs.keys().next() {
            return Err(TaskError::fatal(format!(
                "stevedore.echo takes positional arguments only; keyword argument `{}` names no parameter",
                name.escape_debug()
            )));
        }
        Ok(rmpv::Value::Array(invocation.args))
    })
}

/// `[milliseconds]`: sleeps, and stops early with `cancelled` when the run is cancelled.
fn sleep(invocation: Invocation) -> Outcome {
    Box::pin(async move {
        let Invocation {
            args,
            kwargs,
            context,
        } = invocation;
        let mut arguments = Arguments::new("stevedore.sleep", 1, args, kwargs)?;
        let millis: u64 = arguments.take("milliseconds")?;
        arguments.finish()?;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(millis)) => Ok(rmpv::Value::Nil),
            () = context.cancellation().cancelled() => Err(TaskError::cancelled()),
        }
    })
}

/// `[program, [args...], {env}]`: runs an allowed program (see [`command`]).
fn command(invocation: Invocation) -> Outcome {
    Box::pin(command::run(invocation))
}

/// `[message]`: fails with the message.
fn fail(invocation: Invocation) -> Outcome {
    Box::pin(async move {
        let Invocation { args, kwargs, .. } = invocation;
        let mut arguments = Arguments::new("stevedore.fail", 1, args, kwargs)?;
        let message: String = arguments.take("message")?;
        arguments.finish()?;
        Err(TaskError::new(message))
    })
}
