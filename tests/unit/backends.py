"""Stand-ins for Prometheus, Vault (OpenBao) and a Veza service's pods, on tests/kube_stub.HTTPStub.

Each answers the few calls the library makes, in the real API's shape, so prometheus-api-client,
hvac and requests parse them as they would a real server's; faults are injected with ``fail``.
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable

from ..kube_stub import HTTPStub, Reply, Request


class PrometheusStub(HTTPStub):
    """``/api/v1/query``, ``/api/v1/query_range``, ``/api/v1/rules`` and ``/-/healthy``.

    ``answers`` maps a regex (searched in the PromQL) to what the query returns: a number (one
    series without labels), a list of ``(labels, value)``, or None (no samples). First match wins;
    an unmatched query has no samples, as on a Prometheus that never saw the metric.
    """

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[tuple[str, Any]] = []
        self.rules = ["HighErrorRate", "HighLatency"]
        self.route("GET", r"/api/v1/query", self._query)
        self.route("POST", r"/api/v1/query", self._query)
        self.route("GET", r"/api/v1/query_range", self._range)
        self.route("POST", r"/api/v1/query_range", self._range)
        self.route("GET", r"/api/v1/rules", self._rules)
        self.route("GET", r"/-/healthy", lambda r, m: Reply(200, b"Prometheus Server is Healthy.\n"))

    def answer(self, pattern: str, value: Any) -> None:
        self.answers.insert(0, (pattern, value))

    def error_body(self, status: int, message: str) -> Any:
        return {"status": "error", "errorType": "internal", "error": message}

    def queries(self) -> list[str]:
        return [r.query.get("query", "") for r in self.requests if r.path.startswith("/api/v1/query")]

    def _series(self, promql: str) -> list[tuple[dict[str, str], float]]:
        for pattern, value in self.answers:
            if re.search(pattern, promql):
                if value is None:
                    return []
                return [({}, float(value))] if isinstance(value, (int, float)) else list(value)
        return []

    def _query(self, request: Request, match: re.Match[str]) -> Reply:
        promql = request.query.get("query") or (request.body or {}).get("query", "")
        now = time.time()
        result = [{"metric": labels, "value": [now, repr(v) if v == v else "NaN"]} for labels, v in self._series(promql)]
        return Reply(200, {"status": "success", "data": {"resultType": "vector", "result": result}})

    def _range(self, request: Request, match: re.Match[str]) -> Reply:
        promql = request.query.get("query", "")
        start, end = float(request.query.get("start", time.time() - 60)), float(request.query.get("end", time.time()))
        result = [{"metric": labels, "values": [[start, str(v)], [end, str(v)]]} for labels, v in self._series(promql)]
        return Reply(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})

    def _rules(self, request: Request, match: re.Match[str]) -> Reply:
        rules = [{"name": name, "type": "alerting", "query": "up == 0"} for name in self.rules]
        return Reply(200, {"status": "success", "data": {"groups": [{"name": "veza", "rules": rules}]}})


class VaultStub(HTTPStub):
    """KV version 2 under ``secret/``, the seal status and the token lookup, as OpenBao answers them."""

    def __init__(self, token: str = "dev-token-not-a-secret") -> None:
        super().__init__()
        self.token = token
        self.sealed = False
        self.kv: dict[str, dict[str, str]] = {}
        self.versions: dict[str, int] = {}
        self.route("GET", r"/v1/sys/seal-status", self._seal_status)
        self.route("GET", r"/v1/auth/token/lookup-self", self._lookup_self)
        self.route("*", r"/v1/secret/data/(?P<path>.+)", self._kv)

    def error_body(self, status: int, message: str) -> Any:
        return {"errors": [message]}

    def _denied(self, request: Request) -> Reply | None:
        if self.sealed:
            return Reply(503, {"errors": ["Vault is sealed"]})
        if request.headers.get("x-vault-token") != self.token:
            return Reply(403, {"errors": ["permission denied"]})
        return None

    def _seal_status(self, request: Request, match: re.Match[str]) -> Reply:
        return Reply(200, {"type": "shamir", "initialized": True, "sealed": self.sealed, "t": 1, "n": 1,
                           "progress": 0, "version": "2.0.0"})

    def _lookup_self(self, request: Request, match: re.Match[str]) -> Reply:
        return self._denied(request) or Reply(200, {"data": {"display_name": "token-oncall", "accessor": "acc-123"}})

    def _kv(self, request: Request, match: re.Match[str]) -> Reply:
        denied = self._denied(request)
        if denied:
            return denied
        path = match["path"]
        if request.method == "GET":
            if path not in self.kv:
                return Reply(404, {"errors": []})
            return Reply(200, {"data": {"data": dict(self.kv[path]),
                                        "metadata": {"version": self.versions[path], "deletion_time": "",
                                                     "destroyed": False}}})
        self.kv[path] = dict((request.body or {}).get("data") or {})
        self.versions[path] = self.versions.get(path, 0) + 1
        return Reply(200, {"data": {"version": self.versions[path]}})


class AppStub(HTTPStub):
    """One Veza service's HTTP surface: health, ready, version and any smoke route answer 200."""

    def __init__(self, version: str) -> None:
        super().__init__()
        self.version = version
        # What answers /version: a fixed version, or (set by a test) whatever the cluster now routes to.
        self.serving: Callable[[], str | None] = lambda: self.version
        self.route("GET", r"/version", lambda r, m: Reply(200, {"version": self.serving()}))
        self.route("GET", r"/.*", lambda r, m: Reply(200, {"status": "ok"}))
