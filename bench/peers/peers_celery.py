"""The Celery app the peers' worker processes load (see peers.py)."""
import os

import redis
from celery import Celery

URL = os.environ["PEERS_URL"]
DONE = redis.Redis.from_url(URL)
app = Celery("peers", broker=URL)
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=64)


@app.task(name="noop")
def noop():
    DONE.incr("peers:done")
