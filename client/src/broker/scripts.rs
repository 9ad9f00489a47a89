//! Every Lua script the broker runs, and the one way each is sent.
//!
//! 1. Each atomic operation is one `scripts/<op>.lua` file, opened by a header that lists its
//!    KEYS, ARGV and return values; every key it touches arrives in KEYS, all in one slot.
//! 2. The header is for people: full-line comments are stripped once, on first use, so they
//!    never travel to Redis.
//! 3. A script run on its own goes as EVALSHA, falling back to EVAL (which loads it) on
//!    NOSCRIPT ([`Lua::key`]). A pipelined script goes as EVAL of its stripped body
//!    ([`Lua::eval_in`]): a pipelined EVALSHA is not retried on NOSCRIPT (a restarted or
//!    failed-over server has an empty script cache).

use std::sync::OnceLock;

/// One Lua script: its source, and its stripped form once needed.
pub(super) struct Lua {
    source: &'static str,
    /// The stripped body, and the script object that runs it by its SHA.
    loaded: OnceLock<(String, redis::Script)>,
}

impl Lua {
    const fn new(source: &'static str) -> Self {
        Self {
            source,
            loaded: OnceLock::new(),
        }
    }

    fn loaded(&self) -> &(String, redis::Script) {
        self.loaded.get_or_init(|| {
            let body = strip_comments(self.source);
            let script = redis::Script::new(&body);
            (body, script)
        })
    }

    /// The body sent to Redis (without the header).
    fn body(&self) -> &str {
        &self.loaded().0
    }

    /// An invocation (EVALSHA, loading on NOSCRIPT) with its first key.
    pub fn key<T: redis::ToRedisArgs>(&self, key: T) -> redis::ScriptInvocation<'_> {
        self.loaded().1.key(key)
    }

    /// Adds `EVAL body numkeys keys...` to `pipe`; the caller adds the arguments.
    pub fn eval_in<'p>(
        &self,
        pipe: &'p mut redis::Pipeline,
        keys: &[&str],
    ) -> &'p mut redis::Pipeline {
        pipe.cmd("EVAL").arg(self.body()).arg(keys.len()).arg(keys)
    }

    /// Adds the script to `pipe` as `sending` says; the caller adds the arguments.
    pub fn send_in<'p>(
        &self,
        pipe: &'p mut redis::Pipeline,
        keys: &[&str],
        sending: Sending,
    ) -> &'p mut redis::Pipeline {
        match sending {
            Sending::Body => self.eval_in(pipe, keys),
            Sending::Sha => (pipe.cmd("EVALSHA").arg(self.loaded().1.get_hash()))
                .arg(keys.len())
                .arg(keys),
        }
    }
}

/// How a pipelined script is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// `EVAL body`: always runs (the default in pipelines).
    Body,
    /// `EVALSHA sha`: no body on the wire, but Redis answers NOSCRIPT when it does not know the
    /// script (after a restart or `SCRIPT FLUSH`); only for idempotent scripts whose caller
    /// sends the refused ones again as [`Sending::Body`] (see `resend_refused`).
    Sha,
}

/// Whether Redis refused a script it does not know (its call did not run).
fn is_noscript(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// The replies of a pipeline of scripts sent by SHA ([`Sending::Sha`]), with those Redis refused
/// as NOSCRIPT (they did not run) sent again through `again`, which gets their places and sends
/// them by body, and their new replies put in those places.
pub async fn resend_refused<F, Fut>(
    mut replies: Vec<redis::RedisResult<redis::Value>>,
    again: F,
) -> crate::Result<Vec<redis::RedisResult<redis::Value>>>
where
    F: FnOnce(Vec<usize>) -> Fut,
    Fut: std::future::Future<Output = crate::Result<Vec<redis::RedisResult<redis::Value>>>>,
{
    let refused: Vec<usize> = (replies.iter().enumerate())
        .filter(|(_, reply)| matches!(reply, Err(e) if is_noscript(e)))
        .map(|(at, _)| at)
        .collect();
    if refused.is_empty() {
        return Ok(replies);
    }
    let sent = again(refused.clone()).await?;
    for (at, reply) in refused.into_iter().zip(sent) {
        replies[at] = reply;
    }
    Ok(replies)
}

/// The script without its full-line comments and blank lines.
fn strip_comments(source: &str) -> String {
    source
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            !line.is_empty() && !line.starts_with("--")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Records a process's heartbeat (health).
pub(super) static BEAT: Lua = Lua::new(include_str!("scripts/beat.lua"));
/// Claims a schedule's due run into the outbox (schedules).
pub(super) static CLAIM_FIRE: Lua = Lua::new(include_str!("scripts/claim_fire.lua"));
/// Moves a bad entry to its queue's dead letters and acknowledges it (dead letters).
pub(super) static DEAD_LETTER: Lua = Lua::new(include_str!("scripts/dead_letter.lua"));
/// Moves an entry that arrived before its eta to the delayed set (delayed).
pub(super) static DEFER: Lua = Lua::new(include_str!("scripts/defer.lua"));
/// Releases an on_duplicate key and queues the next parked message (dedup).
pub(super) static DUP_FINISH: Lua = Lua::new(include_str!("scripts/dup_finish.lua"));
/// Publishes a message under an on_duplicate policy (dedup).
pub(super) static DUP_PUBLISH: Lua = Lua::new(include_str!("scripts/dup_publish.lua"));
pub(super) static CLAIM_ID: Lua = Lua::new(include_str!("scripts/claim_id.lua"));
/// Takes an on_duplicate key at run start, or parks the message (dedup).
pub(super) static DUP_START: Lua = Lua::new(include_str!("scripts/dup_start.lua"));
/// Takes or renews beat's leader lease (schedules).
pub(super) static LEASE: Lua = Lua::new(include_str!("scripts/lease.lua"));
/// Gives back a concurrency permit and hands over the next waiter (limits).
pub(super) static LIMIT_RELEASE: Lua = Lua::new(include_str!("scripts/limit_release.lua"));
/// Asks a limit whether a run may start now (limits).
pub(super) static LIMIT_TAKE: Lua = Lua::new(include_str!("scripts/limit_take.lua"));
/// Lists a run as waiting for a permit (limits).
pub(super) static LIMIT_WAIT: Lua = Lua::new(include_str!("scripts/limit_wait.lua"));
/// Moves due delayed messages to their stream (delayed).
pub(super) static MOVE_DUE: Lua = Lua::new(include_str!("scripts/move_due.lua"));
/// Deletes a batch of a queue's unread entries (listing).
pub(super) static PURGE_WAITING: Lua = Lua::new(include_str!("scripts/purge_waiting.lua"));
/// Publishes a claimed schedule run once (schedules).
pub(super) static PUBLISH_FIRED: Lua = Lua::new(include_str!("scripts/publish_fired.lua"));
/// A worker's non-blocking read of its streams by priority, `count` entries in all (fetch).
pub(super) static READ_IN_ORDER: Lua = Lua::new(include_str!("scripts/read_in_order.lua"));
/// Reaps one entry of a lost consumer (health).
pub(super) static REAP: Lua = Lua::new(include_str!("scripts/reap.lua"));
/// Writes a reaper's verdict unless a later attempt is recorded (health).
pub(super) static RECORD_LOST: Lua = Lua::new(include_str!("scripts/record_lost.lua"));
/// Moves a dead letter back to its stream (dead letters).
pub(super) static REQUEUE_DEAD: Lua = Lua::new(include_str!("scripts/requeue_dead.lua"));
/// Takes a field out of a hash (a failed task's kept message, retry_failed).
pub(super) static TAKE_FIELD: Lua = Lua::new(include_str!("scripts/take_field.lua"));
/// Starts, joins, sweeps or cancels a workflow (workflows).
pub(super) static WORKFLOW: Lua = Lua::new(include_str!("scripts/workflow.lua"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_stripped_and_code_is_kept() {
        let stripped = strip_comments(
            "-- purpose\n--\n-- KEYS[1] x\n\nlocal a = 1 -- kept\n  -- gone\nreturn a\n",
        );
        assert_eq!(stripped, "local a = 1 -- kept\nreturn a");
    }

    #[test]
    fn every_script_keeps_code_after_its_header() {
        for lua in [
            &BEAT,
            &CLAIM_FIRE,
            &CLAIM_ID,
            &DEAD_LETTER,
            &DEFER,
            &DUP_FINISH,
            &DUP_PUBLISH,
            &DUP_START,
            &LEASE,
            &LIMIT_RELEASE,
            &LIMIT_TAKE,
            &LIMIT_WAIT,
            &MOVE_DUE,
            &PUBLISH_FIRED,
            &PURGE_WAITING,
            &REAP,
            &RECORD_LOST,
            &REQUEUE_DEAD,
            &TAKE_FIELD,
            &WORKFLOW,
        ] {
            let code = lua.body();
            assert!(code.contains("redis.call"), "{code}");
            assert!(!code.contains("KEYS[1]  "), "header left in: {code}");
        }
    }
}
