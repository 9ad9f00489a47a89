"""The client: publish tasks, wait for them, read their records.

1. `publish` and `publish_many` build each message as the Rust client does (`message.py`),
   sign it when keys are set, and write a whole batch in one pipeline: XADD to the queue's
   stream (broadcasts capped), ZADD to its delayed set for a future `eta` (and the wake-up
   hint), the `dup_publish.lua` script for an `on_duplicate` policy, and the queue registry.
2. An id the caller chose (`id=`) is used once: it is claimed first with `claim_id.lua` (the
   Rust client's script), and a batch with a taken id is refused before anything is written;
   a call under an `on_duplicate` policy is left to the policy.
3. A copy dropped by its `on_duplicate` policy gets a `discarded` record and a place in the
   queue's history of discarded tasks, as from Rust.
4. `TaskHandle.wait` blocks on the task's done list when it was published with `notify`
   (woken at once, no polling), else reads the record with a growing pause (10 ms doubling to
   500 ms), as the Rust handle does.
"""

import json
import math
import os
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import msgpack
import redis

from . import keys as k
from . import message as m
from .connect import open_redis
from .errors import (InvalidOptions, PartlyPublished, PayloadTooLarge, RedisUnreachable,
                     StevedoreError, TaskFailed, WaitTimeout)
from .signing import KeySpec, SigningKeys

MAX_PAYLOAD = 1024 * 1024
BROADCAST_CAP = 10_000
DEDUP_TTL_MS = 3_600_000
DISCARDED_TTL_MS = 86_400_000
ID_CLAIM_TTL_MS = 86_400_000
HISTORY_KEPT = 10_000
FINAL = {"succeeded", "failed", "cancelled", "timed_out", "dead", "expired", "discarded"}
PRECEDENCE = ["running", "retrying", "dead", "failed", "timed_out", "cancelled", "expired",
              "discarded", "succeeded"]


def _script(name: str) -> str:
    with open(os.path.join(os.path.dirname(__file__), name), encoding="utf-8") as file:
        return file.read()


_DUP_PUBLISH = _script("dup_publish.lua")
_CLAIM_ID = _script("claim_id.lua")


class Client:
    """Publishes to one stevedore namespace on one Redis deployment."""

    def __init__(self, connection, namespace: str = "stevedore",
                 signing_keys: Optional[KeySpec] = None, max_payload: int = MAX_PAYLOAD):
        self.redis = connection
        self.keys = k.Keys(namespace)
        if signing_keys is None:
            self._signing = SigningKeys.from_env()
        else:
            self._signing = SigningKeys.parse(signing_keys) if signing_keys else None
        self.max_payload = max_payload
        self._dup_publish = connection.register_script(_DUP_PUBLISH)
        self._claim_id = connection.register_script(_CLAIM_ID)

    @classmethod
    def from_url(cls, url: str, namespace: str = "stevedore",
                 signing_keys: Optional[KeySpec] = None, **redis_options: Any) -> "Client":
        """A client for `url` (the Rust client's URL forms). `signing_keys` (`ID:SECRET,...`
        or pairs) defaults to `STEVEDORE_SIGNING_KEYS`; pass `""` to sign nothing."""
        return cls(open_redis(url, **redis_options), namespace, signing_keys)

    def publish(self, task: str, args: Sequence[Any] = (),
                kwargs: Optional[Mapping[str, Any]] = None, **options: Any) -> "TaskHandle":
        """Publishes one call of `task` and returns its handle.

        Options: `queue`, `node`, `broadcast`, `delay` (seconds or timedelta), `eta`
        (aware datetime or epoch seconds), `retries`, `backoff` (a duration, or a (first,
        longest) pair), `time_limit`, `hard_time_limit`, `on_duplicate` (`discard`,
        `serial`, `queue_one`), `id`, `notify`, `expires` (a duration from now or an aware
        datetime), `headers` (strings; a W3C `traceparent` is passed on), `record` (`all`,
        `failures` or `none`: which runs leave a record; only `all` can be waited on)."""
        return self.publish_many([dict(options, task=task, args=args, kwargs=kwargs)])[0]

    def publish_many(self, calls: Iterable[Mapping[str, Any]]) -> List["TaskHandle"]:
        """Publishes every call (a dict of `publish`'s parameters) in one pipeline."""
        messages, given = [], []
        for call in calls:
            call = dict(call)
            message = m.build(call.pop("task", None), call.pop("args", ()) or (),
                              call.pop("kwargs", None), **call)
            messages.append(message)
            if call.get("id") is not None and m.POLICY_HEADER not in message["headers"]:
                given.append(message["id"])
        payloads = [self._payload(message) for message in messages]
        self._claim_given_ids(given)
        published = self._send(messages, payloads)
        discarded = [msg for msg, ok in zip(messages, published) if not ok]
        if discarded:
            self._record_discarded(discarded)
        return [TaskHandle(self, msg["id"], bool(msg["headers"].get(m.NOTIFY_HEADER)), not ok,
                           msg.get("record", "all"))
                for msg, ok in zip(messages, published)]

    def _claim_given_ids(self, ids: List[str]) -> None:
        """Claims the ids callers chose (one round trip, only when there are some); refused,
        nothing of the batch is published (the ids claimed stay claimed)."""
        if not ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            self._claim_id(keys=[self.keys.claim(task_id), self.keys.record(task_id)],
                           args=[ID_CLAIM_TTL_MS], client=pipe)
        try:
            claimed = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise RedisUnreachable(f"cannot reach Redis, nothing was published: {error}") from None
        taken = next((task_id for task_id, ok in zip(ids, claimed) if ok != 1), None)
        if taken is not None:
            raise InvalidOptions(
                f"task id {taken} is taken: a task was published with it before "
                f"(see `stevedore task {taken}`); publish with another id")

    def _payload(self, message: Dict[str, Any]) -> bytes:
        payload = m.encode(message)
        if self._signing is not None:
            payload = self._signing.sign(payload)
        if len(payload) > self.max_payload:
            raise PayloadTooLarge(message["task"], len(payload), self.max_payload)
        return payload

    def _send(self, messages: List[Dict[str, Any]], payloads: List[bytes]) -> List[bool]:
        """Writes the batch; returns for each message whether it was published."""
        now, wake, checked = m.now_ms(), None, set()
        pipe = self.redis.pipeline(transaction=False)
        for at, (message, payload) in enumerate(zip(messages, payloads)):
            queue, headers = message["queue"], message["headers"]
            eta = message["eta"] if message["eta"] is not None and message["eta"] > now else None
            if eta is not None:
                wake = eta if wake is None else min(wake, eta)
            if m.POLICY_HEADER in headers:
                # Delayed copies are checked as immediate ones are (docs/protocol.md, 5).
                stream, state = self.keys.stream(queue), self.keys.dup(queue, headers[m.KEY_HEADER])
                keys, args = [stream, state], [headers[m.POLICY_HEADER], payload, DEDUP_TTL_MS]
                if eta is not None:
                    keys.append(self.keys.delayed(queue))
                    args += [eta, DEDUP_TTL_MS + eta - now]
                self._dup_publish(keys=keys, args=args, client=pipe)
                checked.add(at)
            elif eta is not None:
                pipe.zadd(self.keys.delayed(queue), {payload: eta})
            elif queue == m.BROADCAST:
                pipe.xadd(self.keys.stream(queue), {"m": payload}, maxlen=BROADCAST_CAP,
                          approximate=True)
            else:
                pipe.xadd(self.keys.stream(queue), {"m": payload})
        if wake is not None:
            pipe.publish(self.keys.delayed_wake(), wake)
        pipe.sadd(self.keys.queue_registry(), *sorted({msg["queue"] for msg in messages}))
        try:
            replies = pipe.execute(raise_on_error=False)[:len(messages)]
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise RedisUnreachable(
                f"cannot reach Redis, nothing of the batch was published for sure: {error}"
            ) from None
        refused = [msg["id"] for msg, reply in zip(messages, replies)
                   if isinstance(reply, Exception)]
        if refused:
            cause = next(str(r) for r in replies if isinstance(r, Exception)).splitlines()[0]
            taken = [msg["id"] for msg, reply in zip(messages, replies)
                     if not isinstance(reply, Exception)]
            raise PartlyPublished(taken, refused, cause)
        return [reply == 1 if at in checked else True for at, reply in enumerate(replies)]

    def _record_discarded(self, messages: List[Dict[str, Any]]) -> None:
        """Each copy dropped by its policy gets a `discarded` record (HSETNX, a day)."""
        pipe = self.redis.pipeline(transaction=False)
        for message in messages:
            run = _run(message, "", "discarded")
            run["finished_at"] = m.now_ms()
            run["error"] = "discarded: a copy with the same arguments was queued or running"
            key = self.keys.record(message["id"])
            pipe.hsetnx(key, "task", msgpack.packb(_stored(run), use_bin_type=True))
            pipe.pexpire(key, DISCARDED_TTL_MS)
            # The history `stevedore tasks --state discarded` reads (docs/protocol.md, 7).
            history = self.keys.history(message["queue"], "discarded")
            pipe.zadd(history, {message["id"]: run["finished_at"]})
            pipe.zremrangebyrank(history, 0, -HISTORY_KEPT - 1)
            pipe.pexpire(history, DISCARDED_TTL_MS)
        pipe.execute()

    def task(self, task_id: str) -> Dict[str, Any]:
        """What is recorded about task `task_id`, in the shape of `stevedore task ID --json`
        (`where` is always null here: a task with no run yet reads `pending`)."""
        task_id = m.task_id(task_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.record(task_id))
        pipe.get(self.keys.progress(task_id))
        pipe.lrange(self.keys.task_log(task_id), 0, -1)
        fields, progress, log = pipe.execute()
        runs, attempts, late, unreadable, workflow = {}, {}, {}, {}, None
        for field, raw in fields.items():
            field = field.decode() if isinstance(field, bytes) else field
            if field == "workflow":
                workflow = raw.decode("utf-8", "replace")
                continue
            if field == "message":
                continue  # a failed task's kept message (docs/protocol.md, 3), not a run
            try:
                run = _decoded(task_id, msgpack.unpackb(raw, raw=False))
            except (ValueError, TypeError, msgpack.UnpackException) as error:
                # One damaged field hides nothing else (as `stevedore task` names it).
                unreadable[field] = f"cannot decode task record: {error}"
                continue
            if field.startswith("attempt:") and field[8:].isdigit():
                attempts[int(field[8:])] = run
            elif field.startswith("late:"):
                late[field] = run
            else:
                runs[field] = run
        states = {run["state"] for run in runs.values()}
        state = next((s for s in PRECEDENCE if s in states), "pending")
        ordered = lambda table: [table[key] for key in sorted(table)]  # noqa: E731
        return {"id": task_id, "state": state, "runs": ordered(runs),
                "attempts": ordered(attempts), "late": ordered(late), "where": None,
                "unreadable": unreadable, "progress": _progress(task_id, progress),
                "log": [line.decode("utf-8", "replace") for line in log], "workflow": workflow}

    def handle(self, task_id: str, notify: bool = False) -> "TaskHandle":
        """A handle on a task published before (`notify`: it was published with `notify`)."""
        return TaskHandle(self, m.task_id(task_id), notify, False)


# A stored run's fields in order (docs/protocol.md, section 3): a compact run is an array of
# these without the id, start and end in ms after publication, trailing nils left out.
RUN_FIELDS = ("task", "queue", "node", "state", "attempt", "published_at", "started_at",
              "finished_at", "result", "error", "retry_at")


def _stored(run: Dict[str, Any]) -> List[Any]:
    """`run` in its compact stored form."""
    values = [run[name] for name in RUN_FIELDS]
    for at in (6, 7):
        if values[at] is not None:
            values[at] = max(values[at] - run["published_at"], 0)
    while values and values[-1] is None:
        values.pop()
    return values


def _progress(task_id: str, raw: Optional[bytes]) -> Optional[Dict[str, Any]]:
    """A stored progress report (JSON), or None."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as error:
        raise StevedoreError(
            f"task {task_id} has an unreadable progress report: {error}") from None


def _decoded(task_id: str, stored: Any) -> Dict[str, Any]:
    """A stored run as a map: the compact array, or the map older workers wrote."""
    if isinstance(stored, dict):
        return stored
    values = list(stored) + [None] * (len(RUN_FIELDS) - len(stored))
    run = dict(zip(RUN_FIELDS, values), id=task_id)
    for name in ("started_at", "finished_at"):
        if run[name] is not None:
            run[name] += run["published_at"]
    return run


def _run(message: Dict[str, Any], node: str, state: str) -> Dict[str, Any]:
    """A run record of `message`, in the Rust record's field order."""
    return {"id": message["id"], "task": message["task"], "queue": message["queue"],
            "node": node, "state": state, "attempt": message["tried"] + 1,
            "published_at": message["published_at"], "started_at": None, "finished_at": None,
            "result": None, "error": None, "retry_at": None}


class TaskHandle:
    """A published task: its id, and a way to wait for its result."""

    def __init__(self, client: Client, task_id: str, notify: bool, discarded: bool,
                 record: str = "all"):
        self.client, self.id, self.notify, self.discarded = client, task_id, notify, discarded
        self.record_policy = record

    def __repr__(self) -> str:
        return f"TaskHandle({self.id!r}, discarded={self.discarded})"

    def progress(self) -> Optional[Dict[str, Any]]:
        """The task's latest progress report (`ctx.set_progress` in a Rust task):
        `{"done", "total", "message", "at"}`, or None when it made none."""
        return _progress(self.id, self.client.redis.get(self.client.keys.progress(self.id)))

    def record(self) -> Dict[str, Any]:
        """The task's record, as `Client.task` gives it."""
        return self.client.task(self.id)

    def wait(self, timeout: float) -> Any:
        """The task's result once it succeeded; `TaskFailed` if it ended otherwise,
        `WaitTimeout` after `timeout` seconds; `InvalidOptions` at once for a task published
        with a record policy that keeps no record of a success."""
        if (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                or not math.isfinite(timeout) or timeout < 0):
            raise InvalidOptions(f"timeout is seconds >= 0, not {timeout!r}")
        if self.record_policy != "all":
            raise InvalidOptions(f"task {self.id} was published with record "
                                 f"{self.record_policy!r}: it cannot be waited on")
        deadline, pause = time.monotonic() + timeout, 0.01
        done = self.client.keys.done(self.id)
        while True:
            record = self.record()
            if record["state"] in FINAL:
                run = record["runs"][0] if record["runs"] else {}
                if record["state"] == "succeeded":
                    return run.get("result")
                raise TaskFailed(self.id, record["state"], run.get("error"))
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(self.id, timeout)
            if self.notify:
                # Rotated, not taken: every waiter of the task is woken by the one token. In
                # steps of at most a second: a connection's socket timeout (5 s by default in
                # newer redis-py) must not cut a longer wait short.
                try:
                    self.client.redis.blmove(done, done, min(max(left, 0.01), 1.0), "LEFT",
                                             "RIGHT")
                except redis.TimeoutError:
                    pass
            else:
                time.sleep(min(pause, left))
                pause = min(pause * 2, 0.5)
