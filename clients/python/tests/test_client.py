"""The Python client against a real redis-server and the real Rust worker and CLI: what it
publishes ends as the Rust side would have it, and a worker cannot tell it from Rust."""

import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgpack
import pytest

from conftest import KEYS, ROOT, cli_json, eventually
from stevedore_client import (Client, InvalidName, InvalidOptions, PartlyPublished,
                              PayloadTooLarge, RedisUnreachable, TaskFailed, dedup_key)
from stevedore_client.signing import SigningKeys

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def same_record(client, cli, task_id):
    """The record as Python reads it equals `stevedore task ID --json` (which finds the
    task, so its `where` is null as Python's)."""
    ours = client.task(task_id)
    theirs = cli_json(cli, "task", task_id)
    assert ours == theirs
    return ours


def test_every_publish_option_ends_with_the_record_the_rust_cli_shows(client, workers, cli):
    workers.start("py", "--queues", "default,other")
    soon = datetime.now(timezone.utc) + timedelta(milliseconds=200)
    given = str(uuid.uuid4())
    calls = [
        ("tests.add", (1, 2), {}, "succeeded"),
        ("tests.add", (), {"queue": "other", "kwargs": {"a": 2, "b": 3}}, "succeeded"),
        ("tests.add", (1, 1), {"node": "py"}, "succeeded"),
        ("tests.add", (2, 2), {"broadcast": True}, "succeeded"),
        ("tests.add", (3, 3), {"delay": 0.2}, "succeeded"),
        ("tests.add", (4, 4), {"eta": soon}, "succeeded"),
        ("tests.fail_times", (1,), {"retries": 2, "backoff": (0.01, 0.05)}, "succeeded"),
        ("tests.sleep_blind", (5000,), {"time_limit": 0.1, "hard_time_limit": 0.3}, "timed_out"),
        ("tests.add", (5, 5), {"id": given}, "succeeded"),
        ("tests.add", (6, 6), {"expires": datetime.now(timezone.utc) - timedelta(seconds=1)},
         "expired"),
        ("tests.add", (7, 7), {"headers": {"traceparent": TRACEPARENT}}, "succeeded"),
        ("tests.join", ([], "-"), {}, "failed"),
    ]
    for task, args, options, state in calls:
        options = dict(options)
        kwargs = options.pop("kwargs", None)
        handle = client.publish(task, args, kwargs, notify=True, **options)
        if state == "succeeded":
            handle.wait(30)
        else:
            with pytest.raises(TaskFailed) as failed:
                handle.wait(30)
            assert failed.value.state == state
        record = same_record(client, cli, handle.id)
        assert record["state"] == state, (task, options, record)
    assert client.handle(given).wait(1) == 10
    retried = client.publish("tests.fail_times", (1,), retries=1, backoff=0.01, notify=True)
    assert retried.wait(30) == 2
    assert [run["state"] for run in same_record(client, cli, retried.id)["attempts"]] == [
        "retrying", "succeeded"]


def raw_messages(server, queue):
    """The messages waiting in `queue`'s stream, decoded."""
    entries = server.redis.xrange(f"stevedore:{{q:{queue}}}:stream")
    return [msgpack.unpackb(fields[b"m"], raw=False) for _, fields in entries]


def test_a_python_message_is_the_rust_message_of_the_same_call(server, client, cli):
    args, kwargs = [1, "two", [3.5, True, None, -7, 300]], {"b": 1, "a": "x"}
    client.publish("tests.echo_any", args, kwargs, queue="from-python", retries=3,
                   backoff=(1, 60), time_limit=5, hard_time_limit=6, on_duplicate="discard",
                   record="failures")
    code, _, err = cli(
        "enqueue", "tests.echo_any", "--args", '[1, "two", [3.5, true, null, -7, 300]]',
        "--kwargs", '{"b": 1, "a": "x"}', "--queue", "from-rust", "--retries", "3",
        "--backoff", "1s", "--max-backoff", "1m", "--time-limit", "5s",
        "--hard-time-limit", "6s", "--on-duplicate", "discard", "--record", "failures")
    assert code == 0, err
    [ours], [theirs] = raw_messages(server, "from-python"), raw_messages(server, "from-rust")
    for message in (ours, theirs):
        message.pop("id"), message.pop("published_at"), message.pop("queue")
    assert ours == theirs
    assert list(ours) == list(theirs), "the same keys in the same order"
    assert ours["headers"]["dedup"] == dedup_key("tests.echo_any", args, kwargs)


def test_on_duplicate_copies_from_python_and_from_rust_are_one_call(client, cli):
    first = client.publish("tests.add", (1, 2), queue="dup", on_duplicate="discard")
    assert not first.discarded
    copy = cli_json(cli, "enqueue", "tests.add", "--args", "[1, 2]", "--queue", "dup",
                    "--on-duplicate", "discard")
    assert copy["discarded"] is True, "Rust sees the Python message as the same call"

    code, _, err = cli("enqueue", "tests.add", "--args", "[2, 3]", "--queue", "dup2",
                       "--on-duplicate", "serial")
    assert code == 0, err
    later = client.publish("tests.add", (2, 3), queue="dup2", on_duplicate="serial")
    assert not later.discarded, "serial parks copies, it does not drop them"
    dropped = client.publish("tests.add", (2, 3), queue="dup2", on_duplicate="discard")
    assert dropped.discarded
    assert client.task(dropped.id)["state"] == "discarded"
    assert cli_json(cli, "task", dropped.id)["state"] == "discarded"
    found = cli_json(cli, "tasks", "--state", "discarded")["tasks"]
    assert {dropped.id, copy["id"]} <= {row["id"] for row in found}, "Python's and Rust's"


def test_a_keyed_worker_runs_python_signed_messages_and_dead_letters_tampered_ones(
        server, workers, cli):
    workers.start("signed", env={"STEVEDORE_SIGNING_KEYS": KEYS})
    signed = Client.from_url(server.url, signing_keys=KEYS)
    assert signed.publish("tests.add", (20, 22), notify=True).wait(30) == 42

    message = {"v": 1, "id": str(uuid.uuid4()), "task": "tests.add", "args": [1, 2],
               "kwargs": {}, "queue": "default", "published_at": 0, "eta": None,
               "retries": None, "tried": 0, "timeout": None, "hard_timeout": None,
               "backoff": None, "max_backoff": None, "headers": {}}
    envelope = msgpack.unpackb(SigningKeys.parse(KEYS).sign(msgpack.packb(message)), raw=False)
    envelope[3] = envelope[3].replace(b"tests.add", b"tests.adx")
    server.redis.xadd("stevedore:{q:default}:stream", {"m": msgpack.packb(envelope)})
    unsigned = Client.from_url(server.url, signing_keys="")
    unsigned.publish("tests.add", (1, 1))
    dead = "stevedore:{q:default}:dead"
    entries = eventually("two dead letters", lambda: (lambda e: len(e) == 2 and e)(
        server.redis.xrange(dead)))
    reasons = sorted(fields[b"reason"].decode() for _, fields in entries)
    assert "not signed" in reasons[0], reasons
    assert "does not match" in reasons[1], reasons


def test_wait_wakes_on_the_done_list_and_polls_only_without_notify(server, client, workers):
    workers.start("waits")
    stats = lambda: server.redis.info("commandstats").get("cmdstat_blmove", {}).get("calls", 0)  # noqa: E731
    before = stats()
    handle = client.publish("tests.sleep_blind", (300,), notify=True)
    assert handle.wait(30) is None
    assert stats() > before, "the wait blocked on the done list"
    assert client.publish("tests.add", (2, 2)).wait(30) == 4
    with pytest.raises(TaskFailed, match="nothing to join"):
        client.publish("tests.join", ([], "-"), notify=True).wait(30)
    with pytest.raises(InvalidOptions, match="cannot be waited on"):
        client.publish("tests.add", (1, 1), record="none").wait(30)


def test_bad_input_is_refused_in_one_line_and_nothing_is_written(server, client):
    refusals = [
        (InvalidName, lambda: client.publish("tests.add", queue="bad name")),
        (InvalidName, lambda: client.publish("tests.add", node="")),
        (InvalidName, lambda: client.publish("")),
        (InvalidOptions, lambda: client.publish("tests.add", eta=datetime(2030, 1, 1))),
        (InvalidOptions, lambda: client.publish("tests.add", delay=1, eta=2e9)),
        (InvalidOptions, lambda: client.publish("tests.add", queue="q", broadcast=True)),
        (InvalidOptions, lambda: client.publish("tests.add", retries=-1)),
        (InvalidOptions, lambda: client.publish("tests.add", on_duplicate="sometimes")),
        (InvalidOptions, lambda: client.publish("tests.add", broadcast=True,
                                                on_duplicate="discard")),
        (InvalidOptions, lambda: client.publish("tests.add", id="not-a-uuid")),
        (InvalidOptions, lambda: client.publish("tests.add", headers={"traceparent": "x"})),
        (InvalidOptions, lambda: client.publish("tests.add", (object(),))),
        (InvalidOptions, lambda: client.publish("tests.add", record="some")),
        (InvalidOptions, lambda: client.publish("tests.add", record="none", notify=True)),
        (PayloadTooLarge, lambda: client.publish("tests.add", ("x" * (1 << 20),))),
        (InvalidOptions, lambda: client.publish("tests.add", retires=3)),
        (InvalidOptions, lambda: client.publish("tests.add", delay=float("nan"))),
        (InvalidOptions, lambda: client.publish("tests.add", delay=float("inf"))),
        (InvalidOptions, lambda: client.publish("tests.add", eta=float("nan"))),
        (InvalidOptions, lambda: client.publish("tests.add", backoff=1e300)),
        (InvalidOptions, lambda: client.publish("tests.add", kwargs=[("a", 1)])),
        (InvalidOptions, lambda: client.handle(str(uuid.uuid4()), notify=True)
         .wait(float("nan"))),
    ]
    for error, call in refusals:
        with pytest.raises(error) as refused:
            call()
        assert "\n" not in str(refused.value) and str(refused.value)
    assert server.redis.keys("stevedore:*") == []
    gone = Client.from_url("unix:///nonexistent/redis.sock", signing_keys="")
    with pytest.raises(RedisUnreachable):
        gone.publish("tests.add", (1, 2))


def test_the_packaged_scripts_are_the_rust_ones():
    for name in ("dup_publish.lua", "claim_id.lua"):
        ours = Path(__file__).resolve().parents[1] / "stevedore_client" / name
        theirs = ROOT / "client" / "src" / "broker" / "scripts" / name
        assert ours.read_text() == theirs.read_text(), name


def test_pip_install_writes_nothing_into_the_source_tree(tmp_path):
    source = Path(__file__).resolve().parents[1]
    before = sorted(p for p in source.rglob("*") if "__pycache__" not in p.parts)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check", "--target",
                    str(tmp_path), str(source)], check=True)
    after = sorted(p for p in source.rglob("*") if "__pycache__" not in p.parts)
    assert after == before
    installed = {p.name for p in (tmp_path / "stevedore_client").iterdir()}
    assert {"claim_id.lua", "dup_publish.lua", "py.typed"} <= installed


def test_an_id_is_used_once_a_second_publish_with_it_is_refused(server, client):
    chosen = str(uuid.uuid4())
    client.publish("tests.add", (1, 2), id=chosen)
    with pytest.raises(InvalidOptions) as refused:
        client.publish("tests.add", (3, 4), id=chosen)
    assert f"task id {chosen} is taken" in str(refused.value)
    with pytest.raises(InvalidOptions):
        client.publish_many([{"task": "tests.add", "args": (5, 6), "id": chosen},
                             {"task": "tests.add", "args": (7, 8)}])
    assert server.redis.xlen("stevedore:{q:default}:stream") == 1
    again = client.publish("tests.add", (1, 2), id=chosen, on_duplicate="discard")
    assert again.id == chosen


def test_a_batch_redis_refuses_out_of_memory_names_what_was_not_published(server, client):
    server.redis.config_set("maxmemory-policy", "noeviction")
    server.redis.config_set("maxmemory", 1)
    with pytest.raises(PartlyPublished) as refused:
        client.publish_many([{"task": "tests.add", "args": (n, n)} for n in range(3)])
    assert len(refused.value.not_published) == 3 and refused.value.published == []
    assert "memory" in refused.value.cause and "\n" not in str(refused.value)
    server.redis.config_set("maxmemory", 0)
    assert server.redis.xlen("stevedore:{q:default}:stream") == 0
    client.publish("tests.add", (1, 2))
    assert server.redis.xlen("stevedore:{q:default}:stream") == 1


def test_delayed_copies_are_checked_for_duplicates_as_immediate_ones_are(client, workers):
    workers.start("py")
    first = client.publish("tests.add", (1, 2), delay=0.3, on_duplicate="discard", notify=True)
    copies = [client.publish("tests.add", (1, 2), delay=0.3, on_duplicate="discard")
              for _ in range(2)]
    assert not first.discarded
    assert all(copy.discarded for copy in copies)
    assert first.wait(30) == 3


def test_a_wait_longer_than_the_connections_socket_timeout_still_waits(server, workers):
    workers.start("py")
    client = Client.from_url(server.url, signing_keys="", socket_timeout=0.5)
    handle = client.publish("tests.echo_after", (9, 1500), notify=True)
    assert handle.wait(30) == 9


def test_a_rust_tasks_progress_is_read_from_python_while_it_runs(server, client, workers):
    workers.start("w1")
    handle = client.publish("tests.progress")
    assert eventually("the first report", handle.progress)["done"] == 1
    report = handle.progress()
    assert (report["total"], report["message"]) == (3, "first step")
    server.redis.rpush(f"tests:go:{handle.id}", 1)
    handle.wait(30)
    assert handle.progress()["done"] == 3
    assert client.publish("tests.add", (1, 2)).progress() is None
