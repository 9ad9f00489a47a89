"""The dramatiq actors the peers' worker processes load (see peers.py)."""
import os

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

URL = os.environ["PEERS_URL"]
DONE = redis.Redis.from_url(URL)
dramatiq.set_broker(RedisBroker(url=URL))


@dramatiq.actor(queue_name="default", max_retries=0)
def noop():
    DONE.incr("peers:done")
