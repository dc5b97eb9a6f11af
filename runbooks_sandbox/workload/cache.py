"""The backend's use of Redis: sessions and a cache of API answers, as the real veza-backend-api.

``/api/v1/users/me`` looks the caller's session up in Redis (and creates it on a miss): without
Redis nobody is signed in, so the route answers 503. ``/api/v1/tracks`` is served through a
short-lived cache entry: without Redis it fails too (the real service has no fallback to the
database for it either). A Redis outage therefore shows in the golden signals as 5xx on those
routes, and in ``veza_redis_operations_total{operation,outcome}`` on every backend pod.

The client is the ``redis`` package, imported in the background once the pod listens (liveness
answers meanwhile; readiness waits for it, as the real service's does for its connection pool),
with short timeouts and no retries: an outage must fail requests quickly, not stall them.
"""
from __future__ import annotations

import random
import threading
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter

__all__ = ["CACHED_ROUTES", "SessionCache", "CacheUnavailable"]

# Routes of each service that go through Redis, and how.
CACHED_ROUTES: dict[str, dict[str, str]] = {
    "veza-backend-api": {"/api/v1/users/me": "session", "/api/v1/tracks": "cache"},
}
_SESSION_TTL_S = 3600
_CACHE_TTL_S = 5
_SESSIONS = 50  # distinct sessions the load's "users" hold


class CacheUnavailable(RuntimeError):
    """Redis did not answer (down, refused, timed out, wrong password)."""


class SessionCache:
    """Sessions and cached answers in Redis, counted per operation and outcome."""

    def __init__(self, url: str, registry: CollectorRegistry, timeout_s: float = 0.25) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.operations = Counter("veza_redis_operations_total", "Redis operations by the service",
                                  ["operation", "outcome"], registry=registry)
        self._client: Any = None
        self._errors: tuple[type[BaseException], ...] = (OSError,)
        self._ready = threading.Event()

    def connect(self) -> None:
        """Import the client and build the connection pool (no round trip: Redis may be down)."""
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            self._client = redis.Redis.from_url(
                self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s,
                retry=Retry(NoBackoff(), 0), health_check_interval=0)
            self._errors = (redis.RedisError, OSError)
        finally:
            self._ready.set()

    @property
    def connected(self) -> bool:
        """The client is set up: readiness waits for it, so no request waits for the import."""
        return self._ready.is_set()

    def _call(self, operation: str, action: Callable[[Any], Any]) -> Any:
        self._ready.wait(5.0)
        if self._client is None:
            self.operations.labels(operation, "error").inc()
            raise CacheUnavailable("redis client not available")
        try:
            value = action(self._client)
        except self._errors as e:
            self.operations.labels(operation, "error").inc()
            raise CacheUnavailable(f"redis {operation}: {type(e).__name__}: {e}") from None
        self.operations.labels(operation, "miss" if value is None and operation == "get" else "ok").inc()
        return value

    def serve(self, kind: str, route: str, body: bytes) -> bytes:
        """The answer of a cached route: through the session store or the cache; CacheUnavailable if down."""
        if kind == "session":
            key = f"veza:session:{random.randrange(_SESSIONS)}"
            if self._call("get", lambda r: r.get(key)) is None:
                self._call("set", lambda r: r.set(key, b"user:7", ex=_SESSION_TTL_S))
            return body
        key = f"veza:cache:{route}"
        cached = self._call("get", lambda r: r.get(key))
        if cached is not None:
            return bytes(cached)
        self._call("set", lambda r: r.set(key, body, ex=_CACHE_TTL_S))
        return body
