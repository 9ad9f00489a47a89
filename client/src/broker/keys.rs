//! Every Redis key stevedore uses, built in one place.
//!
//! `NS` is the namespace (default `stevedore`). The part in braces is the Redis Cluster hash
//! tag: every key of one queue, and every key one script touches, share it, so the layout
//! works unchanged on Redis Cluster.
//!
//! | key                   | type   | holds                                                   |
//! |-----------------------|--------|---------------------------------------------------------|
//! | `NS:{q:NAME}:stream`  | stream | shared queue NAME; field `m` = message, group `workers` |
//! | `NS:{q:NAME}:dead`    | stream | dead letters of queue NAME (capped by count and age)    |
//! | `NS:{q:NAME}:delayed` | zset   | delayed and retrying messages of queue NAME; score = due ms |
//! | `NS:{q:NAME}:dup:KEY` | hash   | on_duplicate state of one (task, args): `holder`, `queued` |
//! | `NS:{q:NAME}:dup:KEY:parked` | list | messages waiting behind the holder (serial, queue_one) |
//! | `NS:{n:NODE}:stream`  | stream | node NODE's own queue; group `workers`                  |
//! | `NS:{n:NODE}:dead`    | stream | dead letters of node NODE's queue (capped)              |
//! | `NS:{b}:stream`       | stream | broadcasts (capped); one group `node:NODE` per node     |
//! | `NS:{b}:dead`         | stream | dead letters of broadcasts (capped)                     |
//! | `NS:{b}:delayed`      | zset   | delayed broadcasts; `NS:{n:NODE}:delayed` likewise      |
//! | `NS:delayed-wake`     | pubsub | channel: a delayed message was added (payload: due ms)  |
//! | `NS:{t:ID}:record`    | hash   | task ID's runs: field `task`, or `node:NODE` per node   |
//! | `NS:{t:ID}:done`      | list   | one token once task ID ended, for waiters (`notify`)    |
//! | `NS:{t:ID}:progress`  | string | task ID's latest progress report (JSON; a day)          |
//! | `NS:{t:ID}:log`       | list   | task ID's own log lines (newest 200; expires with its record) |
//! | `NS:{t:ID}:claim`     | string | an id its publisher chose is taken (expires in a day)   |
//! | `NS:{c}:stream`       | stream | control requests (capped), read by every node           |
//! | `NS:{r:ID}:reply`     | list   | answers to control request ID (expires)                 |
//! | `NS:{x}:cancels`      | hash   | cancel records: field = record id, value = record       |
//! | `NS:{x}:paused`       | hash   | paused queues: field = queue wire name, value = time    |
//! | `NS:{h}:nodes`        | hash   | consumer (one per worker process) -> its last NodeBeat  |
//! | `NS:{s}:schedules`    | hash   | schedule name -> Schedule                               |
//! | `NS:{s}:due`          | zset   | schedule name -> next fire time (ms)                    |
//! | `NS:{s}:outbox`       | hash   | claimed firings not yet published -> queue + messages   |
//! | `NS:{r}:queues`       | set    | wire names of every queue published to or read          |
//! | `NS:{m}:done:MINUTE`  | string | runs settled in that minute (ms / 60,000); expires 2 h  |
//! | `NS:{m}:queues:MINUTE` | hash  | each queue's depth that minute: `WAITING:OLDEST_AGE_MS` (sampled by heartbeats); expires 2 h |
//! | `NS:{m}:tasks:MINUTE` | hash   | per task name that minute: `NAME\truns`, `NAME\tsucceeded`, `NAME\tfailed`, `NAME\tb:I` (run-time bucket); expires 2 h |
//! | `NS:{q:NAME}:history:STATE` | zset | finished runs of queue NAME in final STATE: task id -> finished ms (newest N kept; `{n:NODE}`, `{b}` likewise) |
//! | `NS:{e}:events`       | stream | task events for monitors (off by default; capped)       |
//! | `NS:{s}:runs`         | hash   | counts of schedule runs: `fired`, `missed`, `failed`    |
//! | `NS:{q:NAME}:fired:RUN` | string | run RUN of a schedule was published (expires)         |
//! | `NS:{s}:leader`       | string | the beat leader lease, `BEAT_ID:TOKEN` (expires)        |
//! | `NS:{s}:fence`        | string | the fencing counter of the lease                        |
//! | `NS:{h}:beats`        | hash   | consumer -> time of its last heartbeat (Redis clock, ms) |
//! | `NS:{l:NAME}:def`     | hash   | limit NAME: `count`, `per_ms`, `burst`, `concurrency`   |
//! | `NS:{l:NAME}:tat[:KEY]` | string | the rate's clock (GCRA theoretical arrival, ms; expires) |
//! | `NS:{l:NAME}:held[:KEY]` | zset | permits held: `TASK_ID:TRIED` -> lease end (ms)      |
//! | `NS:{l:NAME}:waiting[:KEY]` | list | runs waiting for a permit: `QUEUE\nPAYLOAD`      |
//! | `NS:{l:NAME}:passes`  | zset   | runs given a later start by the rate: task id -> ms     |
//! | `NS:{r}:limits`       | set    | names of the limits defined with `stevedore limit set`  |
//! | `NS:{h}:gone`         | hash   | consumer -> GoneProcess: lost (reaped) or stopped, kept for the retention |
//! | `NS:{h}:reaped`       | hash   | consumer -> entries reaped from it (every reaper adds its own) |
//! | `NS:{w:ID}:graph`     | hash   | workflow ID's steps: node JSON, group members, sealed step messages |
//! | `NS:{w:ID}:state`     | hash   | workflow ID's join state: step states, results, counters, status |
//! | `NS:{w:ID}:outbox`    | hash   | workflow ID's steps ready and not yet published -> their input |
//! | `NS:{w:ID}:done`      | list   | one token each time workflow ID ended, for waiters      |
//! | `NS:{r}:workflows`    | zset   | workflows not ended -> last activity (ms), for the sweeper |

use crate::Destination;

/// The consumer group that reads shared and node queues.
pub const QUEUE_GROUP: &str = "workers";

/// The broadcast groups are named this plus the node's name.
const BROADCAST_GROUP_PREFIX: &str = "node:";

/// The field of a stream entry that holds the encoded message.
pub const MESSAGE_FIELD: &str = "m";

/// Builds the keys of one namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    ns: String,
}

impl Keys {
    /// Keys under namespace `ns` (already validated).
    pub fn new(ns: &str) -> Self {
        Self { ns: ns.to_owned() }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    fn tag(&self, destination: &Destination) -> String {
        match destination {
            Destination::Queue(q) => format!("{}:{{q:{q}}}", self.ns),
            Destination::Node(n) => format!("{}:{{n:{n}}}", self.ns),
            Destination::Broadcast => format!("{}:{{b}}", self.ns),
        }
    }

    /// Stream: the messages waiting in a queue (or the broadcast log).
    pub fn stream(&self, destination: &Destination) -> String {
        format!("{}:stream", self.tag(destination))
    }

    /// Stream: the dead letters of a queue.
    pub fn dead_letters(&self, destination: &Destination) -> String {
        format!("{}:dead", self.tag(destination))
    }

    /// Sorted set: delayed messages of a queue, scored by due time (ms).
    pub fn delayed(&self, destination: &Destination) -> String {
        format!("{}:delayed", self.tag(destination))
    }

    /// Pub/sub channel that wakes the delayed-message forwarders (a hint only: they also
    /// wake at the nearest due time they know of, and every few seconds).
    pub fn delayed_wake(&self) -> String {
        format!("{}:delayed-wake", self.ns)
    }

    /// Hash: the on_duplicate state of dedup key `key` in `destination`.
    pub fn dup(&self, destination: &Destination, key: &str) -> String {
        format!("{}:dup:{key}", self.tag(destination))
    }

    /// List: messages parked behind the holder of dedup key `key`.
    pub fn dup_parked(&self, destination: &Destination, key: &str) -> String {
        format!("{}:dup:{key}:parked", self.tag(destination))
    }

    /// Hash: the runs of task `id`.
    pub fn record(&self, id: &str) -> String {
        format!("{}:{{t:{id}}}:record", self.ns)
    }

    /// String: task `id` was chosen by its publisher and is taken (expires with records).
    pub fn claim(&self, id: &str) -> String {
        format!("{}:{{t:{id}}}:claim", self.ns)
    }

    /// String: task `id`'s latest progress report (JSON; kept a day).
    pub fn progress(&self, id: &str) -> String {
        format!("{}:{{t:{id}}}:progress", self.ns)
    }

    /// List: task `id`'s own log lines (attempt headers, then lines; the newest 200).
    pub fn task_log(&self, id: &str) -> String {
        format!("{}:{{t:{id}}}:log", self.ns)
    }

    /// List: holds a token once task `id` has ended, for waiters.
    pub fn done(&self, id: &str) -> String {
        format!("{}:{{t:{id}}}:done", self.ns)
    }

    /// Stream: control requests.
    pub fn control(&self) -> String {
        format!("{}:{{c}}:stream", self.ns)
    }

    /// List: answers to control request `id`.
    pub fn reply(&self, id: &str) -> String {
        format!("{}:{{r:{id}}}:reply", self.ns)
    }

    /// Hash: cancel records.
    pub fn cancels(&self) -> String {
        format!("{}:{{x}}:cancels", self.ns)
    }

    /// Hash: what each worker process said in its last heartbeat.
    pub fn nodes(&self) -> String {
        format!("{}:{{h}}:nodes", self.ns)
    }

    /// Hash: when each worker process last beat (Redis's clock).
    pub fn beats(&self) -> String {
        format!("{}:{{h}}:beats", self.ns)
    }

    /// Hash: worker processes that are gone (reaped as lost, or stopped cleanly), kept for the
    /// lost-node retention.
    pub fn gone(&self) -> String {
        format!("{}:{{h}}:gone", self.ns)
    }

    /// Hash: entries reaped from each lost worker process, added to by every reaper
    /// (HINCRBY), kept and deleted with its gone entry.
    pub fn reaped(&self) -> String {
        format!("{}:{{h}}:reaped", self.ns)
    }

    /// Hash: schedules by name.
    pub fn schedules(&self) -> String {
        format!("{}:{{s}}:schedules", self.ns)
    }

    /// Sorted set: schedules by next fire time.
    pub fn schedules_due(&self) -> String {
        format!("{}:{{s}}:due", self.ns)
    }

    /// String: the beat leader lease.
    pub fn leader(&self) -> String {
        format!("{}:{{s}}:leader", self.ns)
    }

    /// String: how many runs were settled in `minute` (ms since the epoch / 60,000).
    pub fn done_in_minute(&self, minute: u64) -> String {
        format!("{}:{{m}}:done:{minute}", self.ns)
    }

    /// Hash: each queue's depth sampled in `minute` (`WAITING:OLDEST_AGE_MS`).
    pub fn queue_minute(&self, minute: u64) -> String {
        format!("{}:{{m}}:queues:{minute}", self.ns)
    }

    /// Hash: each task name's runs, failures and run-time buckets in `minute`.
    pub fn task_minute(&self, minute: u64) -> String {
        format!("{}:{{m}}:tasks:{minute}", self.ns)
    }

    /// Sorted set: the newest finished runs of `destination` in final state `state` (task id
    /// -> finished ms).
    pub fn history(&self, destination: &Destination, state: &str) -> String {
        format!("{}:history:{state}", self.tag(destination))
    }

    /// Stream: task events for outside monitors (published, started, outcomes, lost).
    pub fn events(&self) -> String {
        format!("{}:{{e}}:events", self.ns)
    }

    /// Hash: how many schedule runs were fired, missed (skipped by a missed-run policy) and
    /// failed (a schedule that could not fire was parked), for `stevedore_schedule_runs_total`.
    pub fn schedule_runs(&self) -> String {
        format!("{}:{{s}}:runs", self.ns)
    }

    /// Hash: claimed firings not yet published (firing -> target queue and messages).
    pub fn schedules_outbox(&self) -> String {
        format!("{}:{{s}}:outbox", self.ns)
    }

    /// String: set once run `run_id` of a schedule was published to `destination`.
    pub fn fired(&self, destination: &Destination, run_id: &str) -> String {
        format!("{}:fired:{run_id}", self.tag(destination))
    }

    /// Hash: the steps of workflow `id` (see `scripts/workflow.lua`).
    pub fn workflow_graph(&self, id: &str) -> String {
        format!("{}:{{w:{id}}}:graph", self.ns)
    }

    /// Hash: the join state of workflow `id`.
    pub fn workflow_state(&self, id: &str) -> String {
        format!("{}:{{w:{id}}}:state", self.ns)
    }

    /// Hash: the steps of workflow `id` that are ready and not yet published.
    pub fn workflow_outbox(&self, id: &str) -> String {
        format!("{}:{{w:{id}}}:outbox", self.ns)
    }

    /// List: a token each time workflow `id` ended, for waiters.
    pub fn workflow_done(&self, id: &str) -> String {
        format!("{}:{{w:{id}}}:done", self.ns)
    }

    /// Sorted set: workflows not ended, scored by their last activity (ms), for the sweeper.
    pub fn workflows(&self) -> String {
        format!("{}:{{r}}:workflows", self.ns)
    }

    /// String: the lease's fencing counter.
    pub fn fence(&self) -> String {
        format!("{}:{{s}}:fence", self.ns)
    }

    /// Hash: paused queues.
    pub fn paused(&self) -> String {
        format!("{}:{{x}}:paused", self.ns)
    }

    /// Set: the wire name of every queue published to (or read by a worker): how listings
    /// find queues without walking the keyspace.
    pub fn queue_registry(&self) -> String {
        format!("{}:{{r}}:queues", self.ns)
    }

    /// Hash: the definition of named limit `name`.
    pub fn limit_def(&self, name: &str) -> String {
        format!("{}:{{l:{name}}}:def", self.ns)
    }

    /// One of limit `name`'s keys: `part` (`tat`, `held`, `waiting`) of the bucket of `key`
    /// (the whole limit's when it is not keyed).
    pub fn limit_part(&self, name: &str, part: &str, key: Option<&str>) -> String {
        match key {
            Some(key) => format!("{}:{{l:{name}}}:{part}:{key}", self.ns),
            None => format!("{}:{{l:{name}}}:{part}", self.ns),
        }
    }

    /// Set: the names of the named limits.
    pub fn limit_registry(&self) -> String {
        format!("{}:{{r}}:limits", self.ns)
    }

    /// The pattern that matches every queue stream, for listings.
    pub fn stream_pattern(&self) -> String {
        format!("{}:{{*}}:stream", self.ns)
    }

    /// `NS:{*}:delayed`: every delayed set (for SCAN).
    pub fn delayed_pattern(&self) -> String {
        format!("{}:{{*}}:delayed", self.ns)
    }

    /// `NS:{*}:dead`: every dead-letter stream (for SCAN).
    pub fn dead_pattern(&self) -> String {
        format!("{}:{{*}}:dead", self.ns)
    }

    /// The destination of a stream key produced by [`Keys::stream`], if it is one.
    pub fn destination_of_stream(&self, key: &str) -> Option<Destination> {
        self.destination_of(key, "stream")
    }

    /// The destination of a queue's key ending in `:KIND` (`stream`, `delayed`, `dead`).
    pub fn destination_of(&self, key: &str, kind: &str) -> Option<Destination> {
        let inner = key
            .strip_prefix(&self.ns)?
            .strip_prefix(":{")?
            .strip_suffix(kind)?
            .strip_suffix("}:")?;
        match inner.split_once(':') {
            Some(("q", name)) => Destination::queue(name).ok(),
            Some(("n", name)) => Destination::node(name).ok(),
            None if inner == "b" => Some(Destination::Broadcast),
            _ => None,
        }
    }

    /// The consumer group through which `node` reads `destination`: `workers` for queues,
    /// `node:NODE` for the broadcasts (the same in every namespace).
    pub fn group(destination: &Destination, node: &str) -> String {
        match destination {
            Destination::Broadcast => format!("{BROADCAST_GROUP_PREFIX}{node}"),
            _ => QUEUE_GROUP.to_owned(),
        }
    }

    /// The node whose broadcast group is `group` (the inverse of [`Keys::group`] for the
    /// broadcasts).
    pub fn node_of_broadcast_group(group: &str) -> Option<&str> {
        group.strip_prefix(BROADCAST_GROUP_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_queue_share_a_hash_tag() {
        let k = Keys::new("ns");
        let q = Destination::queue("default").unwrap();
        assert_eq!(k.stream(&q), "ns:{q:default}:stream");
        assert_eq!(k.dead_letters(&q), "ns:{q:default}:dead");
        assert_eq!(
            k.stream(&Destination::node("a").unwrap()),
            "ns:{n:a}:stream"
        );
        assert_eq!(k.stream(&Destination::Broadcast), "ns:{b}:stream");
        assert_eq!(k.record("x"), "ns:{t:x}:record");
        assert_eq!(k.done("x"), "ns:{t:x}:done");
    }

    #[test]
    fn stream_keys_parse_back_to_their_destination() {
        let k = Keys::new("ns");
        for d in [
            Destination::queue("io").unwrap(),
            Destination::node("web-1").unwrap(),
            Destination::Broadcast,
        ] {
            assert_eq!(k.destination_of_stream(&k.stream(&d)), Some(d));
        }
        assert_eq!(k.destination_of_stream("other:{q:io}:stream"), None);
    }
}
