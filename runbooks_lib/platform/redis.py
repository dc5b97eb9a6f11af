"""The platform's Redis as the runbooks see it: reachable, how fast, how full (read-only).

One call, :func:`ping_redis`, through the ``redis`` client; its errors never escape: an
unreachable Redis is a result the health check reports, with the reason (never the URL,
which holds the password).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["RedisHealth", "ping_redis"]


@dataclass(frozen=True)
class RedisHealth:
    address: str  # host:port, without the password
    reachable: bool
    ping_ms: float | None = None
    version: str | None = None
    used_memory_mb: float | None = None
    keys: int | None = None
    error: str | None = None


def ping_redis(url: str, timeout_s: float = 2.0) -> RedisHealth:
    """PING and INFO against ``url`` (``redis://:password@host:port/db``)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                  retry=Retry(NoBackoff(), 0))
    kwargs = client.connection_pool.connection_kwargs
    address = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    try:
        started = time.perf_counter()
        client.ping()
        ping_ms = (time.perf_counter() - started) * 1000
        info = client.info()
    except redis.RedisError as e:
        # The message names host and port at most; the password is not part of it.
        return RedisHealth(address, False, error=f"{type(e).__name__}: {e}")
    finally:
        client.close()
    keys = sum(int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, dict))
    return RedisHealth(address, True, round(ping_ms, 2), str(info.get("redis_version")),
                       round(int(info.get("used_memory", 0)) / 2**20, 2), keys)
