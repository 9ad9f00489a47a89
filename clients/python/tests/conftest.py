"""Fixtures: a real redis-server (on a Unix socket in a temporary directory) and the real Rust
worker and admin CLI (`test-worker`, `test-admin`: the stock binaries plus the Rust suite's
test tasks), found in `STEVEDORE_BIN_DIR` (default: the workspace's `target/debug`)."""

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from stevedore_client import Client

ROOT = Path(__file__).resolve().parents[3]
BIN_DIR = Path(os.environ.get("STEVEDORE_BIN_DIR", ROOT / "target" / "debug"))
SERVER = os.environ.get("STEVEDORE_TEST_SERVER", "redis-server")
KEYS = "py2026:a-long-random-secret-for-tests"


def eventually(what, check, timeout=30.0):
    """Polls `check` every 20 ms until it returns a true value, or fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


class Server:
    """A redis-server of the test's own, stopped (by its pid) at the end."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="stevedore-py-")
        self.socket = os.path.join(self.dir, "redis.sock")
        if shutil.which(SERVER) is None:
            pytest.fail(f"cannot start {SERVER}: not installed (scripts/test installs redis-server)")
        self.process = subprocess.Popen(
            [SERVER, "--port", "0", "--unixsocket", self.socket, "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"unix://{self.socket}"
        self.redis = redis.Redis(unix_socket_path=self.socket)
        eventually("redis-server to answer", self._pings)

    def _pings(self):
        try:
            return self.redis.ping()
        except redis.ConnectionError:
            return False

    def stop(self):
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Workers:
    """Rust worker processes on the server, each stopped by its pid at the end."""

    def __init__(self, server):
        self.server, self.processes = server, []

    def start(self, node, *args, env=None):
        binary = BIN_DIR / "test-worker"
        assert binary.exists(), f"{binary} is missing: build it with `cargo build -p stevedore-tests --bins`"
        environment = dict(os.environ, STEVEDORE_TEST_REDIS_URL=self.server.url, RUST_LOG="warn")
        environment.pop("STEVEDORE_SIGNING_KEYS", None)
        environment.update(env or {})
        log = open(os.path.join(self.server.dir, f"worker-{node}.log"), "wb")
        process = subprocess.Popen(
            [str(binary), "--redis-url", self.server.url, "--node", node, "--heartbeat", "200ms",
             "--lost-after", "1s", *args], stdout=log, stderr=subprocess.STDOUT, env=environment)
        self.processes.append(process)
        nodes = "stevedore:{h}:nodes"
        eventually(f"worker {node} to beat",
                   lambda: any(f.decode().startswith(node + ":")
                               for f in self.server.redis.hkeys(nodes)))
        return process

    def stop(self):
        for process in self.processes:
            process.kill()
            process.wait()


@pytest.fixture
def server():
    server = Server()
    yield server
    server.stop()


@pytest.fixture
def workers(server):
    fleet = Workers(server)
    yield fleet
    fleet.stop()


@pytest.fixture
def client(server):
    return Client.from_url(server.url, signing_keys="")


@pytest.fixture
def cli(server):
    """Runs the Rust admin CLI against the server: returns (exit code, stdout, stderr)."""
    binary = BIN_DIR / "test-admin"

    def run(*args, env=None):
        environment = dict(os.environ)
        environment.pop("STEVEDORE_SIGNING_KEYS", None)
        environment.update(env or {})
        done = subprocess.run([str(binary), "--redis-url", server.url, *args],
                              capture_output=True, text=True, env=environment, timeout=60)
        return done.returncode, done.stdout, done.stderr

    return run


def cli_json(cli, *args, **kwargs):
    """The CLI's `--json` output of one line."""
    code, out, err = cli(*args, "--json", **kwargs)
    assert code in (0, 1, 3), err  # 3: a copy discarded, an unknown task
    return json.loads(out.strip().splitlines()[-1])
