"""Building a task message exactly as the Rust client does (docs/protocol.md, section 2).

1. Names: queue and node names are 1 to 128 ASCII letters, digits, `_`, `-`, `.`.
2. Times: durations are seconds (int or float) or `timedelta`; instants are timezone-aware
   `datetime`s or epoch seconds; both become integer milliseconds on the wire.
3. The map's keys are written in the Rust client's order, `kwargs` and `headers` sorted by
   key, so a Python message and a Rust message of the same call are the same bytes but for
   the id and the times.
4. The dedup key is the SHA-1 of `[task, args, kwargs]` in MessagePack's smallest forms, the
   encoding the Rust client uses (section "The dedup key").
"""

import hashlib
import math
import re
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import msgpack

from .errors import InvalidName, InvalidOptions

VERSION = 1
# The longest duration and the latest instant accepted, as the Rust command line's bounds.
LONGEST_SECONDS = 100 * 365 * 86_400
LATEST_SECONDS = 253_402_300_799
# Every option `Client.publish` takes: anything else (a typo such as `retires`) is refused.
OPTIONS = frozenset({"queue", "node", "broadcast", "delay", "eta", "retries", "backoff",
                     "time_limit", "hard_time_limit", "on_duplicate", "id", "notify", "expires",
                     "headers", "record"})
NOTIFY_HEADER = "notify"
# Which runs leave a record (message field `record`, absent = "all").
RECORD_POLICIES = ("all", "failures", "none")
POLICY_HEADER = "on_duplicate"
KEY_HEADER = "dedup"
POLICIES = ("parallel", "discard", "serial", "queue_one")
BROADCAST = "broadcast"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")

Duration = Union[int, float, timedelta]
Instant = Union[int, float, datetime]


def now_ms() -> int:
    """Milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def check_name(kind: str, name: str) -> str:
    """`name` if stevedore accepts it as a queue or node name, else `InvalidName`."""
    if not isinstance(name, str) or not _NAME.match(name):
        if not isinstance(name, str) or not name:
            reason = "it is empty"
        elif len(name) > 128:
            reason = "it is longer than 128 characters"
        else:
            reason = "use only ASCII letters, digits, `_`, `-` and `.`"
        raise InvalidName(f"invalid {kind} name {name!r}: {reason}")
    return name


def duration_ms(what: str, value: Optional[Duration]) -> Optional[int]:
    """A duration in whole milliseconds (`None` stays `None`)."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds) or not 0 <= seconds <= LONGEST_SECONDS):
        raise InvalidOptions(f"{what} is a duration: seconds >= 0 (at most 100 years) or a "
                             f"timedelta, not {value!r}")
    return int(round(seconds * 1000))


def instant_ms(what: str, value: Optional[Instant]) -> Optional[int]:
    """An instant in milliseconds since the epoch (`None` stays `None`)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidOptions(
                f"{what} is a naive datetime; give it a time zone (datetime.now(timezone.utc))"
            )
        return int(round(value.timestamp() * 1000))
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not 0 <= value <= LATEST_SECONDS):
        raise InvalidOptions(f"{what} is a datetime or epoch seconds, not {value!r}")
    return int(round(value * 1000))


def task_id(given: Optional[str]) -> str:
    """The given id as lowercase hyphenated UUID text, or a new random one."""
    if given is None:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(str(given)))
    except ValueError:
        raise InvalidOptions(f"task id {given!r} is not a UUID") from None


def queue_of(queue: Optional[str], node: Optional[str], broadcast: bool) -> str:
    """The message's `queue` field: `NAME`, `node:NODE` or `broadcast`."""
    given = [name for name, set_ in (("queue", queue), ("node", node), ("broadcast", broadcast))
             if set_]
    if len(given) > 1:
        raise InvalidOptions(f"give one of queue, node and broadcast, not {' and '.join(given)}")
    if broadcast:
        return BROADCAST
    if node is not None:
        return "node:" + check_name("node", node)
    return check_name("queue", queue if queue is not None else "default")


def encode(value: Any) -> bytes:
    """MessagePack with strings as str and bytes as bin, integers in their smallest form."""
    try:
        return msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as error:
        raise InvalidOptions(f"an argument cannot be sent as MessagePack: {error}") from None


def sorted_map(values: Optional[Mapping[str, Any]], what: str) -> Dict[str, Any]:
    """`values` with its keys in byte order, as a Rust `BTreeMap` writes them."""
    values = dict(values or {})
    for key in values:
        if not isinstance(key, str):
            raise InvalidOptions(f"{what} keys are strings, not {key!r}")
    return dict(sorted(values.items(), key=lambda item: item[0].encode()))


def dedup_key(task: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """The key that makes two calls copies: SHA-1 (hex) of `[task, args, kwargs]`."""
    return hashlib.sha1(encode([task, list(args), sorted_map(kwargs, "kwargs")])).hexdigest()


def headers_of(headers: Optional[Mapping[str, str]], notify: bool) -> Dict[str, str]:
    """The message's headers, checked (strings only; a `traceparent` must be well formed)."""
    out = {}
    for key, value in (headers or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidOptions(f"header names and values are strings (header {key!r})")
        out[key] = value
    parent = out.get("traceparent")
    if parent is not None and not _TRACEPARENT.match(parent):
        raise InvalidOptions(
            "the traceparent header is `00-` 32 hex `-` 16 hex `-` 2 hex (W3C Trace Context)"
        )
    if notify:
        out[NOTIFY_HEADER] = "1"
    return sorted_map(out, "headers")


def backoff_pair(backoff) -> Tuple[Optional[int], Optional[int]]:
    """`backoff` as (first delay, longest delay) in ms: one duration sets the first only."""
    if backoff is None:
        return None, None
    if isinstance(backoff, (tuple, list)):
        if len(backoff) != 2:
            raise InvalidOptions("backoff is a duration or a (first, longest) pair")
        return duration_ms("backoff", backoff[0]), duration_ms("max backoff", backoff[1])
    return duration_ms("backoff", backoff), None


def build(task: str, args: Sequence[Any] = (), kwargs: Optional[Mapping[str, Any]] = None,
          **options) -> Dict[str, Any]:
    """The message map of one call (see `Client.publish` for the options)."""
    if not isinstance(task, str) or not task:
        raise InvalidName(f"invalid task name {task!r}: it is empty")
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise InvalidOptions(f"args is a list or tuple, not {type(args).__name__}")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise InvalidOptions(f"kwargs is a dict, not {type(kwargs).__name__}")
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise InvalidOptions(f"unknown option {unknown[0]!r}; the options are {sorted(OPTIONS)}")
    now = now_ms()
    delay, eta = options.get("delay"), options.get("eta")
    if delay is not None and eta is not None:
        raise InvalidOptions("give delay or eta, not both")
    due = now + duration_ms("delay", delay) if delay is not None else instant_ms("eta", eta)
    expires = options.get("expires")
    if isinstance(expires, datetime):
        expires_at = instant_ms("expires", expires)
    else:
        after = duration_ms("expires", expires)
        expires_at = None if after is None else now + after
    retries = options.get("retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)
                                or not 0 <= retries < 2**32):
        raise InvalidOptions(f"retries is a whole number >= 0, not {retries!r}")
    backoff, max_backoff = backoff_pair(options.get("backoff"))
    queue = queue_of(options.get("queue"), options.get("node"), options.get("broadcast", False))
    message = {
        "v": VERSION,
        "id": task_id(options.get("id")),
        "task": task,
        "args": list(args),
        "kwargs": sorted_map(kwargs, "kwargs"),
        "queue": queue,
        "published_at": now,
        "eta": due if due is not None and due > now else None,
        "retries": retries,
        "tried": 0,
        "timeout": duration_ms("time_limit", options.get("time_limit")),
        "hard_timeout": duration_ms("hard_time_limit", options.get("hard_time_limit")),
        "backoff": backoff,
        "max_backoff": max_backoff,
        "headers": headers_of(options.get("headers"), options.get("notify", False)),
    }
    if expires_at is not None:
        message["expires"] = expires_at
    record = options.get("record", "all")
    if record not in RECORD_POLICIES:
        raise InvalidOptions(f"record policy {record!r} is not one of {RECORD_POLICIES}")
    if record != "all":
        if options.get("notify", False):
            raise InvalidOptions(f"task {task!r} is published with notify but record {record!r}: "
                                 "a waiter would never see its success; use record 'all'")
        message["record"] = record
    policy = options.get("on_duplicate")
    if policy is not None and policy not in POLICIES:
        raise InvalidOptions(f"unknown on_duplicate policy {policy!r}; use one of {POLICIES}")
    if policy not in (None, "parallel"):
        if queue == BROADCAST:
            raise InvalidOptions(f"on_duplicate {policy} does not apply to broadcasts")
        headers = dict(message["headers"])
        headers[POLICY_HEADER] = policy
        headers[KEY_HEADER] = dedup_key(task, message["args"], message["kwargs"])
        message["headers"] = sorted_map(headers, "headers")
    return message
