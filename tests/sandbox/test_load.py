"""The load generator against real workload processes: counts, versions, connection errors,
the /traffic endpoint another process reads, and its bounds."""
from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runbooks_sandbox.runtime.load import LoadGenerator, fetch_report, parse_since
from runbooks_sandbox.workload.launch import WorkloadProcess, start_workload

REPO = "registry.veza.app"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def run_workload(tmp_path: Path) -> Iterator[Callable[[str], WorkloadProcess]]:
    started: list[WorkloadProcess] = []

    def run(image: str) -> WorkloadProcess:
        host = f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"
        workload = start_workload(image, tmp_path / f"w{len(started)}.log", host=host, access_log=False)
        started.append(workload)
        return workload

    yield run
    for workload in started:
        workload.stop(grace_s=2)


@pytest.fixture
def generators() -> Iterator[list[LoadGenerator]]:
    made: list[LoadGenerator] = []
    yield made
    for generator in made:
        generator.stop()


def _served(url: str) -> dict[str, float]:
    """Requests the workload itself counted, by status code (from its /metrics)."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    by_code: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_total":
                by_code[sample.labels["code"]] = by_code.get(sample.labels["code"], 0) + sample.value
    return by_code


def test_counts_match_what_each_service_served(run_workload, generators) -> None:
    backend = run_workload(f"{REPO}/veza-backend-api:v1.4.0")
    chat = run_workload(f"{REPO}/veza-chat-server:v1.5.1-errors")
    generator = LoadGenerator({"veza-backend-api": backend.url, "veza-chat-server": chat.url}, rate_per_s=40, timeout_s=2)
    generators.append(generator)
    generator.start()
    time.sleep(2.5)
    generator.stop()
    report = generator.report()

    assert set(report) == {"veza-backend-api", "veza-chat-server"}
    for service, workload, version in (
        ("veza-backend-api", backend, "v1.4.0"),
        ("veza-chat-server", chat, "v1.5.1-errors"),
    ):
        served = _served(workload.url)
        summary = report[service]
        assert 80 <= summary["requests"] <= 102  # 40/s for 2.5 s
        assert summary["requests"] == sum(served.values())  # every request seen on both sides
        assert summary["failed"] == served.get("500", 0)
        assert list(summary["by_version"]) == [version]
        detail = summary["by_version"][version]
        assert (detail["requests"], detail["failed"]) == (summary["requests"], summary["failed"])
        assert 0 < detail["p50_ms"] <= detail["p99_ms"] < 1000
    assert report["veza-backend-api"]["failed"] == 0
    assert 5 <= report["veza-chat-server"]["failed"] <= 10  # 8 % of 80..102
    assert generator.dropped == 0


def test_requests_are_attributed_to_the_version_that_answered(run_workload, generators) -> None:
    old = run_workload(f"{REPO}/veza-backend-api:v1.4.0")
    new = run_workload(f"{REPO}/veza-backend-api:v1.6.0")
    generator = LoadGenerator({"veza-backend-api": old.url}, rate_per_s=50, timeout_s=2)
    generators.append(generator)
    generator.start()
    time.sleep(1.0)
    generator.set_targets({"veza-backend-api": new.url})
    switched = datetime.now(timezone.utc)
    time.sleep(1.0)
    generator.stop()

    whole = generator.report()["veza-backend-api"]
    assert set(whole["by_version"]) == {"v1.4.0", "v1.6.0"}
    assert whole["requests"] == sum(v["requests"] for v in whole["by_version"].values())
    assert whole["by_version"]["v1.4.0"]["requests"] == sum(_served(old.url).values())
    assert whole["by_version"]["v1.6.0"]["requests"] == sum(_served(new.url).values())
    after = generator.report(since=switched + timedelta(seconds=0.1))["veza-backend-api"]
    assert list(after["by_version"]) == ["v1.6.0"] and after["failed"] == 0
    pods = {r.pod for r in generator.records(switched + timedelta(seconds=0.1))}
    assert len(pods) == 1 and None not in pods


def test_connection_errors_are_counted_when_a_target_dies(run_workload, generators) -> None:
    workload = run_workload(f"{REPO}/veza-stream-server:v1.4.0")
    generator = LoadGenerator({"veza-stream-server": workload.url}, rate_per_s=50, timeout_s=1)
    generators.append(generator)
    generator.start()
    time.sleep(1.0)
    workload.process.kill()  # no drain: the pod's process dies
    workload.process.wait()
    died = datetime.now(timezone.utc)
    time.sleep(1.0)
    generator.stop()

    before = generator.report()["veza-stream-server"]
    assert before["by_version"]["v1.4.0"]["failed"] == 0
    after = generator.report(since=died)["veza-stream-server"]
    assert 40 <= after["requests"] <= 52
    assert after["failed"] == after["requests"]
    assert list(after["by_version"]) == ["unknown"]
    assert {r.error for r in generator.records(died)} == {"ConnectionRefusedError"}


def test_report_endpoint_and_self_stop(run_workload, generators) -> None:
    workload = run_workload(f"{REPO}/veza-frontend:v1.5.0")
    generator = LoadGenerator({"veza-frontend": workload.url}, rate_per_s=40, timeout_s=2, max_duration_s=0.75)
    generators.append(generator)
    host, port = generator.serve_report()
    assert host.startswith("127.")
    started = datetime.now(timezone.utc)
    generator.start()
    deadline = time.monotonic() + 5
    while generator.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not generator.running  # stopped by itself after max_duration_s
    assert 25 <= generator.report()["veza-frontend"]["requests"] <= 31

    url = f"http://{host}:{port}"
    assert fetch_report(url) == generator.report()
    assert fetch_report(url, since=started) == generator.report(started)
    future = fetch_report(url, since=datetime.now(timezone.utc) + timedelta(minutes=1))
    assert future == {"veza-frontend": {"requests": 0, "failed": 0, "by_version": {}}}
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/traffic?since=yesterday", timeout=5)
    assert refused.value.code == 400


def test_since_accepts_iso_times_as_utc() -> None:
    assert parse_since("2025-03-01T10:00:00Z") == datetime(2025, 3, 1, 10, tzinfo=timezone.utc)
    assert parse_since("2025-03-01T10:00:00") == datetime(2025, 3, 1, 10, tzinfo=timezone.utc)
    assert parse_since("2025-03-01T12:00:00+02:00") == datetime(2025, 3, 1, 10, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="not an ISO time"):
        parse_since("10 minutes ago")


def test_one_service_gets_its_own_rate_at_run_time(run_workload, generators) -> None:
    backend = run_workload(f"{REPO}/veza-backend-api:v1.4.0")
    chat = run_workload(f"{REPO}/veza-chat-server:v1.4.0")
    generator = LoadGenerator({"veza-backend-api": backend.url, "veza-chat-server": chat.url}, rate_per_s=10, timeout_s=2)
    generators.append(generator)
    generator.start()
    generator.set_rate(60, service="veza-backend-api")  # e.g. enough traffic for a 5 % canary
    assert generator.rates() == {"veza-backend-api": 60, "veza-chat-server": 10}
    since = datetime.now(timezone.utc)
    time.sleep(2.0)
    report = generator.report(since)
    assert 90 <= report["veza-backend-api"]["requests"] <= 125, report  # 60/s for 2 s
    assert 15 <= report["veza-chat-server"]["requests"] <= 22, report  # still 10/s
    detail = report["veza-backend-api"]["by_version"]["v1.4.0"]
    assert detail["first"] <= detail["last"] and detail["first"].endswith("Z")
    generator.set_rate(None, service="veza-backend-api")
    assert generator.rates()["veza-backend-api"] == 10
    with pytest.raises(ValueError):
        generator.set_rate(None)
