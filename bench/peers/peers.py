"""Drains N no-op tasks queued first with two worker processes of Celery, dramatiq or
apalis-redis, on the Redis at URL, and prints tasks per second (issue 22, point 6; run by
bench/peers/run.sh, not by CI).

    python peers.py celery|dramatiq N URL
    python peers.py apalis N URL BINARY    # BINARY: bench/peers/apalis, built by run.sh

Each task INCRs one counter, so the end is known without a result backend: one Redis command
per task more than a bare no-op, as stevedore's run writes a record per task.
"""
import importlib
import os
import subprocess
import sys
import time

import redis

KIND, N, URL = sys.argv[1], int(sys.argv[2]), sys.argv[3]
HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = {
    # One process each, the fastest pool for no-ops; two processes as stevedore's two workers.
    "celery": ["-m", "celery", "-A", "peers_celery", "worker", "--pool", "solo",
               "--loglevel", "WARNING"],
    "dramatiq": ["-m", "dramatiq", "peers_dramatiq", "--processes", "1", "--threads", "8"],
    "apalis": [],
}


def main():
    if KIND not in WORKERS:
        sys.exit(f"unknown peer {KIND!r}: celery, dramatiq or apalis")
    os.environ["PEERS_URL"] = URL
    done = redis.Redis.from_url(URL)
    done.delete("peers:done")
    if KIND == "apalis":
        binary = sys.argv[4]
        subprocess.run([binary, "push", URL, str(N)], check=True)
        worker = [binary, "work", URL]
    else:
        sys.path.insert(0, HERE)
        tasks = importlib.import_module(f"peers_{KIND}")
        send = tasks.noop.delay if KIND == "celery" else tasks.noop.send
        for _ in range(N):
            send()
        worker = [sys.executable, *WORKERS[KIND]]
    env = dict(os.environ, PYTHONPATH=HERE)
    started = time.monotonic()
    procs = [subprocess.Popen(worker, cwd=HERE, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(2)]
    try:
        wait_for(lambda: int(done.get("peers:done") or 0), started, "run")
        ran = time.monotonic() - started
        if KIND != "apalis":
            print(f"{KIND}: {N / ran:.0f} tasks/s")
            return
        # apalis runs tasks ahead of its acknowledgements (a run's ack waits in a channel its
        # poll loop serves between fetches): at the last run most are still in flight. Its
        # figure is the time until every task is in its done set, as stevedore's is until
        # every outcome is recorded and acknowledged.
        wait_for(lambda: done.zcard("noop:done"), started, "acknowledged")
        acked = time.monotonic() - started
        print(f"{KIND}: {N / acked:.0f} tasks/s acknowledged ({N / ran:.0f} tasks/s run)")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()


def wait_for(count, started, what):
    """Polls `count()` until it reaches N, for 30 minutes at most."""
    while count() < N:
        if time.monotonic() - started > 1800:
            sys.exit(f"{KIND}: {count()} of {N} {what} after 30 min")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
