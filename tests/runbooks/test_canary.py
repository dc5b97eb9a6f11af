"""The canary promotion runbook end to end on the sandbox (Istio weights through the sandbox's proxy).

Three canaries run at once on three services (their waits overlap, which keeps the suite short):
a good version promoted through every step, ``v1.5.1-errors`` and ``v1.5.2-slow`` aborted at the
first step (5 %). Then Prometheus is stopped under a running canary: it holds on "no data" and
aborts after ``max_hold_s``. The load generator sends 100 requests/s to the good canary's service
and 60/s to the erroring one during the test (5 and 3 req/s to a 5 % canary: enough for a decision
in seconds; at the default 10/s the statistical floor is minutes), and its report is the users'
view of failed requests.
"""
from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import nbformat
import pytest

from .conftest import Run, Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(1200)]

GOOD, ERRORS, SLOW = "veza-backend-api", "veza-stream-server", "veza-frontend"
INTERVAL_S = 5


def primary_version(sandbox: Sandbox, service: str) -> str:
    """What the primary runs: its image's tag (the rollback tests leave a stale version label on
    the stream server with a plain `kubectl set image`, as on-call engineers do)."""
    image = sandbox.deployment(service)["spec"]["template"]["spec"]["containers"][0]["image"]
    return image.rsplit(":", 1)[1]


def decision_lines(run: Run) -> list[str]:
    """The decision rows the record printed, '#n HH:MM:SS step s (w %): ACTION — why'."""
    nb = nbformat.read(run.record, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("name") == "stdout")
    return [line for line in text.splitlines() if re.match(r"#\d+ \d\d:\d\d:\d\d step ", line)]


def record_has_plot_and_tables(run: Run) -> bool:
    nb = nbformat.read(run.record, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    html = " ".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)
    return any("image/png" in o.get("data", {}) for o in outputs) and "Decisions" in html and "Evidence" in html


@pytest.fixture(scope="module")
def busy(sandbox: Sandbox) -> Iterator[Sandbox]:
    # A latency regression needs latency points, not many requests: the slow canary's service gets less.
    for service, rate in ((GOOD, 100), (ERRORS, 60), (SLOW, 30)):
        out = sandbox.runbook("sandbox", "load", "--rate", str(rate), "--service", service, "--state-dir", str(sandbox.state_dir))
        assert out.returncode == 0, out.stderr
    time.sleep(2)  # a minute of baseline history exists already; let the new rate reach Prometheus
    yield sandbox
    for service in (GOOD, ERRORS, SLOW):
        sandbox.runbook("sandbox", "load", "--service", service, "--reset", "--state-dir", str(sandbox.state_dir))


def canary(sandbox: Sandbox, service: str, version: str, **params: object) -> Run:
    values = {"service": service, "version": version, "interval_s": INTERVAL_S, **params}
    # generous: on a shared, overloaded machine a look has taken 25 s and a kernel start 30 s
    return sandbox.run("canary_promotion", *values.items(), timeout=900)


def test_good_promoted_and_bad_versions_aborted_at_the_first_step(busy: Sandbox) -> None:
    good = "v1.4.0" if primary_version(busy, GOOD) == "v1.6.0" else "v1.6.0"
    before = {s: primary_version(busy, s) for s in (ERRORS, SLOW)}
    before_dry = busy.deployment(SLOW)["metadata"]["resourceVersion"]

    def dry_then_slow() -> tuple[Run, str, str, Run]:
        # the slow canary's service is first canaried in dry run: the API server sees every change, nothing changes
        dry = canary(busy, SLOW, "v1.5.2-slow", dry_run=True)
        objects = busy.kubectl("get", "deployments,virtualservices,destinationrules", "-o", "name")
        version = busy.deployment(SLOW)["metadata"]["resourceVersion"]
        return dry, objects, version, canary(busy, SLOW, "v1.5.2-slow")

    with ThreadPoolExecutor(3) as pool:
        futures = {}
        for service, job in ((GOOD, lambda: canary(busy, GOOD, good)), (ERRORS, lambda: canary(busy, ERRORS, "v1.5.1-errors")),
                             (SLOW, dry_then_slow)):
            futures[service] = pool.submit(job)
            time.sleep(6)  # kernels start one after the other: three at once starve two cores
        runs = {service: future.result() for service, future in futures.items()}
    dry, objects_after_dry, version_after_dry, runs[SLOW] = runs[SLOW]

    assert dry.exit_code == 0, dry.output
    assert dry.summary["outcome"] == "succeeded" and dry.summary["figures"]["decisions"] == 0
    assert version_after_dry == before_dry
    names = objects_after_dry.split()
    assert f"deployment.apps/{SLOW}-canary" not in names, names
    assert not any(n.endswith(f".networking.istio.io/{SLOW}") for n in names), names

    # the good version: promoted through every step; the primary runs it; every decision is in the record
    run = runs[GOOD]
    assert run.exit_code == 0, run.output
    summary = run.summary
    assert summary["outcome"] == "promoted"
    assert primary_version(busy, GOOD) == good
    lines = decision_lines(run)
    assert len(lines) == summary["figures"]["decisions"] >= 4
    assert [w for w in (5, 25, 50, 100) if any(f"({w} %): ADVANCE" in l or f"({w} %): PROMOTE" in l for l in lines)] == [5, 25, 50, 100]
    assert "PROMOTE" in lines[-1] and record_has_plot_and_tables(run)
    assert summary["figures"]["canary_failed_requests"] == 0
    traffic = busy.traffic(run.began)[GOOD]
    assert traffic["failed"] == 0, traffic  # nobody saw a failure, through the steps and the promotion
    assert "veza-backend-api-canary" not in busy.kubectl("get", "deployments", "-o", "name")
    assert "veza-backend-api" not in busy.kubectl("get", "virtualservices", "-o", "name")

    # the bad versions: aborted at 5 %, the primary untouched and serving, only the canary's share failed
    # 8 % errors: the sequential test or the SLO gates, whichever has its evidence first; +400 ms under
    # the 500 ms SLO: only the comparison with the baseline can see it
    for service, version, layers in ((ERRORS, "v1.5.1-errors", ("sequential test", "SLO gates")),
                                     (SLOW, "v1.5.2-slow", ("canary vs baseline",))):
        run = runs[service]
        assert run.exit_code == 1, run.output
        summary = run.summary
        assert summary["outcome"] == "aborted", summary
        assert any(f"aborted: {layer}:" in summary["error"] for layer in layers), summary["error"]
        lines = decision_lines(run)
        assert "step 1 (5 %): ABORT" in lines[-1] and all("step 1 (5 %)" in l for l in lines), lines
        assert primary_version(busy, service) == before[service]
        assert busy.deployment(f"{service}-canary")["spec"]["replicas"] == 0
        figures = summary["figures"]
        assert 0 < figures["time_to_abort_s"] < 60
        traffic = busy.traffic(run.began)[service]
        failed_by_version = {v: t["failed"] for v, t in traffic["by_version"].items()}
        assert failed_by_version.get(before[service]) == 0 and failed_by_version.get("unknown", 0) == 0, traffic
        assert traffic["by_version"][before[service]]["requests"] > 200  # the primary kept serving
        assert traffic["failed"] == failed_by_version.get(version, 0) == figures["canary_failed_requests"]
        if version == "v1.5.1-errors":
            assert figures["canary_failed_requests"] > 0


def test_prometheus_stopped_during_the_analysis_holds_then_aborts(busy: Sandbox) -> None:
    version = "v1.4.0" if primary_version(busy, GOOD) != "v1.4.0" else "v1.5.0"
    state = ["--state-dir", str(busy.state_dir)]
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(canary, busy, GOOD, version, max_hold_s=10)
        try:
            deadline = time.monotonic() + 120
            weights: list[int] = []
            while time.monotonic() < deadline and not future.done():
                vs = json.loads(busy.kubectl("get", "virtualservices", "-o", "json"))["items"]
                weights = [r.get("weight") for v in vs for h in v["spec"]["http"] for r in h["route"]]
                if 5 in weights:  # the first step is routed: the analysis is on
                    break
                time.sleep(0.3)
            assert 5 in weights, f"the canary never reached its first step: {weights}"
            down = busy.runbook("sandbox", "fault", "prometheus", "--down", *state)
            assert down.returncode == 0, down.stderr
            run = future.result(timeout=300)
        finally:
            up = busy.runbook("sandbox", "fault", "prometheus", "--clear", *state)
            assert up.returncode == 0, up.stderr
    assert run.exit_code == 1, run.output
    summary = run.summary
    assert summary["outcome"] == "aborted" and "no data for" in summary["error"], summary["error"]
    assert "Prometheus unreachable" in summary["error"]
    lines = decision_lines(run)
    assert lines and not any("PROMOTE" in l or "ADVANCE" in l for l in lines), lines
    holds = [l for l in lines if "HOLD — no data" in l]
    assert holds and "ABORT — no data for" in lines[-1]
    assert primary_version(busy, GOOD) != version
    assert busy.deployment(f"{GOOD}-canary")["spec"]["replicas"] == 0
    # Nothing judged the version: it is not remembered as bad (a later deploy of it is not refused).
    assert not summary["verdicts"] and "not judged" in summary["notes"]
