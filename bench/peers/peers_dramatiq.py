"""The dramatiq actors the peers' worker processes load (see peers.py)."""
import os

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

URL = os.environ["PEERS_URL"]
DONE = redis.Redis.from_url(URL)
# Without the Prometheus middleware: its exposition server takes one port per host, and two
# worker processes run here.
MIDDLEWARE = [m() for m in dramatiq.middleware.default_middleware
              if m.__name__ != "Prometheus"]
dramatiq.set_broker(RedisBroker(url=URL, middleware=MIDDLEWARE))


@dramatiq.actor(queue_name="default", max_retries=0)
def noop():
    DONE.incr("peers:done")
