"""Post-deploy checks a person would run by hand: health, readiness, smoke requests, versions.

Requests reach pods and the Service the way the profile's ``cluster.reach`` says (:mod:`.reach`):
through the API server's proxy, from wherever kubectl works, or directly at pod and cluster IPs
from inside the cluster. Every check returns a table of what was seen and raises CheckFailed
with the numbers when it fails.
"""
from __future__ import annotations

import statistics
from collections import Counter
from typing import TYPE_CHECKING, Any

from .cluster import pod_state
from .reach import Reach
from ..errors import CheckFailed, NotFound

if TYPE_CHECKING:
    import pandas as pd

    from .cluster import Cluster
    from ..config.profiles import ServiceSpec

__all__ = ["service_url", "pod_checks", "smoke_checks", "error_budget_check", "serving_versions"]


def service_url(cluster: "Cluster", service: str) -> str:
    """The Service's base URL, as ``cluster.reach`` goes to it (its cluster IP and first port)."""
    svc = cluster.service(service)
    ip = (svc.get("spec") or {}).get("clusterIP")
    ports = (svc.get("spec") or {}).get("ports") or []
    if not ip or ip == "None" or not ports:
        raise NotFound(f"service {service} has no cluster IP and port to check through")
    return cluster.reach.service_url(service, ip, int(ports[0]["port"]))


def _direct() -> Reach:
    return Reach(namespace="")


def pod_checks(cluster: "Cluster", service: str, spec: "ServiceSpec", *, label_selector: str | None = None,
               timeout_s: float = 3) -> "pd.DataFrame":
    """GET health, ready and version on every pod of the service; fails if any is not 200."""
    import pandas as pd

    rows, failures = [], []
    reach = cluster.reach
    for pod in cluster.pods(label_selector or f"app={service}"):
        state = pod_state(pod)
        if state.deleting:
            continue
        row: dict[str, Any] = {"pod": state.name, "ip": state.ip, "ready": state.ready, "version": state.version}
        base = reach.pod_url(state.name, state.ip, spec.port) if state.ip else None
        for path in (spec.health_path, spec.ready_path, "/version"):
            code, _, _ = reach.get(base + path, timeout_s) if base else (None, 0, None)
            row[path] = code
            if code != 200:
                failures.append(f"{state.name} {path} → {code or 'no answer'}")
        rows.append(row)
    if not rows:
        raise CheckFailed(f"{service}: no pods to check")
    table = pd.DataFrame(rows).set_index("pod")
    if failures:
        raise CheckFailed(f"{service}: {len(failures)} pod check(s) failed: " + "; ".join(failures[:6]))
    return table


def smoke_checks(base_url: str, spec: "ServiceSpec", *, requests_per_route: int = 10,
                 timeout_s: float = 3, max_p99_ms: float | None = None, reach: Reach | None = None) -> "pd.DataFrame":
    """A few requests per critical route through ``base_url`` (from ``reach``: a cluster's
    ``reach`` for its URLs; direct when None); every one must answer 2xx."""
    import pandas as pd

    rows, failures = [], []
    reach = reach or _direct()
    for route in spec.smoke_routes or ("/",):
        codes, latencies = [], []
        for _ in range(requests_per_route):
            code, ms, _ = reach.get(base_url + route, timeout_s)
            codes.append(code)
            latencies.append(ms)
        bad = [c for c in codes if c is None or not 200 <= c < 300]
        worst = max(latencies)
        rows.append({"route": route, "requests": len(codes), "failed": len(bad),
                     "median ms": round(statistics.median(latencies), 1), "max ms": round(worst, 1),
                     "codes": dict(Counter(str(c) for c in codes))})
        if bad:
            failures.append(f"{route}: {len(bad)}/{len(codes)} failed ({dict(Counter(str(c) for c in bad))})")
        if max_p99_ms is not None and worst > max_p99_ms:
            failures.append(f"{route}: slowest {worst:.0f} ms > {max_p99_ms:g} ms")
    table = pd.DataFrame(rows).set_index("route")
    if failures:
        raise CheckFailed("smoke checks failed: " + "; ".join(failures))
    return table


def error_budget_check(base_urls: list[str], spec: "ServiceSpec", *, success_rate_min: float,
                       requests_total: int = 300, significance: float = 0.01, workers: int = 8,
                       timeout_s: float = 3, reach: Reach | None = None) -> "pd.DataFrame":
    """Send ``requests_total`` requests over ``base_urls`` (round robin, every critical route) and fail
    when the failures are too many for a version that meets the SLO.

    Smoke requests prove that each route answers; they cannot tell an 8 % error rate from a 1 %
    budget (ten requests all pass at 8 % errors 43 % of the time). Here the decision is a one-sided
    binomial test: with an error budget of ``1 - success_rate_min``, how likely is it to see this
    many failures or more? Below ``significance`` the version is over budget. At 300 requests and a
    1 % budget, 9 failures fail the check, and an 8 % error rate passes it about once in 10 000.
    """
    import pandas as pd
    from concurrent.futures import ThreadPoolExecutor
    from scipy.stats import binomtest

    if not base_urls:
        raise CheckFailed("no pod to send the error-budget requests to")
    routes = spec.smoke_routes or ("/",)
    targets = [base_urls[i % len(base_urls)] + routes[i % len(routes)] for i in range(requests_total)]
    reach = reach or _direct()

    def one(url: str) -> tuple[int | None, float]:
        code, ms, _ = reach.get(url, timeout_s)
        return code, ms

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, targets))
    failed = sum(1 for code, _ in results if code is None or code >= 500)
    budget = 1 - success_rate_min
    p_value = binomtest(failed, requests_total, budget, alternative="greater").pvalue if budget > 0 else (1.0 if failed == 0 else 0.0)
    latencies = sorted(ms for _, ms in results)
    table = pd.DataFrame([{
        "pods": len(base_urls), "requests": requests_total, "failed": failed,
        "error rate": f"{failed / requests_total:.2%}", "budget": f"{budget:.2%}",
        "p-value (over budget)": round(p_value, 4), "p99 ms": round(latencies[int(0.99 * (len(latencies) - 1))], 1),
        "decision": "over budget" if p_value < significance else "within budget",
    }]).set_index("requests")
    if p_value < significance:
        raise CheckFailed(f"error budget: {failed}/{requests_total} requests failed ({failed / requests_total:.1%}); "
                          f"a version within the {budget:.1%} budget shows that many with p = {p_value:.2g} < {significance:g}")
    return table


def serving_versions(base_url: str, samples: int = 40, timeout_s: float = 3,
                     reach: Reach | None = None) -> dict[str, int]:
    """Which versions answer /version through the Service, by count over ``samples`` requests."""
    seen: Counter[str] = Counter()
    reach = reach or _direct()
    for _ in range(samples):
        code, _, reply = reach.get(base_url + "/version", timeout_s)
        if code == 200:
            try:
                seen[str(reply.json().get("version"))] += 1
            except (ValueError, AttributeError):  # not a JSON object: an answer, but not a version
                seen["error unreadable"] += 1
        else:
            seen[f"error {code}"] += 1
    return dict(seen)
