"""Opening Redis from the URL forms of the Rust client (docs/deployment.md, "URL forms").

`redis://`, `rediss://` (`#insecure` skips certificate checks), `unix://`,
`redis+sentinel://[USER:PASS@]S1:P1,S2:P2/MASTER[/DB]` (and `rediss+sentinel://`), and
`redis+cluster://[USER:PASS@]H1:P1,H2:P2` (and `rediss+cluster://`) through redis-py's cluster
client. The environment fills what the URL leaves out: `STEVEDORE_REDIS_USERNAME`,
`STEVEDORE_REDIS_PASSWORD`, `STEVEDORE_REDIS_PASSWORD_FILE`, `STEVEDORE_REDIS_CA_FILE`.
"""

import os
from typing import Any, Dict, List, Tuple
from urllib.parse import unquote, urlsplit

import redis

from .errors import InvalidOptions


def _hosts(netloc: str) -> Tuple[Dict[str, Any], List[Tuple[str, int]]]:
    """Credentials and `host:port` pairs of a netloc listing several hosts."""
    auth: Dict[str, Any] = {}
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        user, _, password = credentials.partition(":")
        if user:
            auth["username"] = unquote(user)
        if password:
            auth["password"] = unquote(password)
    hosts = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidOptions(f"`{part}` is not HOST:PORT")
        hosts.append((host.strip("[]"), int(port)))
    return auth, hosts


def _from_env(kwargs: Dict[str, Any], tls: bool) -> Dict[str, Any]:
    """`kwargs` with what the environment gives and the URL did not."""
    if "username" not in kwargs and os.environ.get("STEVEDORE_REDIS_USERNAME"):
        kwargs["username"] = os.environ["STEVEDORE_REDIS_USERNAME"]
    if "password" not in kwargs:
        if os.environ.get("STEVEDORE_REDIS_PASSWORD"):
            kwargs["password"] = os.environ["STEVEDORE_REDIS_PASSWORD"]
        elif os.environ.get("STEVEDORE_REDIS_PASSWORD_FILE"):
            with open(os.environ["STEVEDORE_REDIS_PASSWORD_FILE"], encoding="utf-8") as file:
                kwargs["password"] = file.readline().rstrip("\r\n")
    if tls and os.environ.get("STEVEDORE_REDIS_CA_FILE"):
        kwargs.setdefault("ssl_ca_certs", os.environ["STEVEDORE_REDIS_CA_FILE"])
    return kwargs


def open_redis(url: str, **options: Any):
    """A redis-py client (`Redis` or `RedisCluster`) for `url`; `options` go to redis-py."""
    url, _, fragment = url.partition("#")
    parts = urlsplit(url)
    scheme = parts.scheme
    tls = scheme.startswith("rediss")
    if tls and fragment == "insecure":
        options.setdefault("ssl_cert_reqs", None)
    if scheme in ("redis", "rediss", "unix"):
        found = _from_env({}, tls)
        return redis.Redis.from_url(url, **{**found, **options})
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        auth, hosts = _hosts(parts.netloc)
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise InvalidOptions("a sentinel URL names its master: .../MASTER_NAME[/DB]")
        data = _from_env(dict(auth), tls)
        if len(path) > 1:
            data["db"] = int(path[1])
        if tls:
            data["ssl"] = True
        sentinel_auth = {}
        if os.environ.get("STEVEDORE_SENTINEL_PASSWORD"):
            sentinel_auth["password"] = os.environ["STEVEDORE_SENTINEL_PASSWORD"]
            sentinel_auth["username"] = os.environ.get("STEVEDORE_SENTINEL_USERNAME")
        if tls:
            sentinel_auth["ssl"] = True
        sentinel = redis.sentinel.Sentinel(hosts, sentinel_kwargs=sentinel_auth,
                                           **{**data, **options})
        return sentinel.master_for(path[0])
    if scheme in ("redis+cluster", "rediss+cluster"):
        from redis.cluster import ClusterNode, RedisCluster

        auth, hosts = _hosts(parts.netloc)
        data = _from_env(dict(auth), tls)
        if tls:
            data["ssl"] = True
        nodes = [ClusterNode(host, port) for host, port in hosts]
        return RedisCluster(startup_nodes=nodes, **{**data, **options})
    raise InvalidOptions(
        f"unknown Redis URL scheme `{scheme}`: use redis, rediss, unix, redis+sentinel, "
        "rediss+sentinel, redis+cluster or rediss+cluster"
    )
