"""health: each part of the check finds what is wrong, with numbers; the verdict names every failure."""
from __future__ import annotations

import pytest

from runbooks_lib.errors import CheckFailed
from runbooks_lib.procedures.health import HealthCheck

from ..kube_stub import HTTPStub, deployment, event, pod
from .conftest import SERVICE, Platform, image, profile_for


def check(platform: Platform) -> HealthCheck:
    return HealthCheck(platform.ctx("health_check"))


def test_a_healthy_platform_is_healthy(platform: Platform) -> None:
    health = check(platform)
    workloads = health.workloads()
    assert workloads.loc[SERVICE, "ready"] == 2 and workloads.loc[SERVICE, "versions"] == "v1.6.0"
    health.events()
    signals = health.golden_signals()
    assert signals.loc[SERVICE, "success rate %"] == 100.0 and signals.loc[SERVICE, "p99 ms"] == 42.0
    assert health.vault().loc[0, "keys at secret/veza/sandbox"] == 2
    health.database()  # the test profile names no database: a warning
    assert health.conclusion() == "healthy, with 1 warning(s)"
    assert health.ctx.figures["services_ready"] == 1 and health.ctx.figures["failed_checks"] == 0
    assert platform.kube.writes == []


def test_unready_waiting_and_restarting_pods_are_findings(platform: Platform) -> None:
    platform.kube.update("deployments", SERVICE, lambda d: d["status"].update(readyReplicas=1))
    platform.kube.add("pods", pod("crashing", image("v1.6.0"), labels={"app": SERVICE}, ready=False,
                                  waiting_reason="CrashLoopBackOff", restarts=4))
    health = check(platform)
    health.workloads()
    with pytest.raises(CheckFailed) as failed:
        health.conclusion()
    assert str(failed.value) == (f"unhealthy: {SERVICE}: 1/2 replicas ready; "
                                 f"{SERVICE}: containers waiting: CrashLoopBackOff")
    assert ("warn", SERVICE, "4 container restart(s)") in [(f.severity, f.part, f.message) for f in health.findings]


def test_a_missing_deployment_and_a_blown_deadline_are_failures(platform: Platform) -> None:
    platform.kube.update("deployments", SERVICE, lambda d: d["status"].update(
        conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]))
    health = check(platform)
    health.workloads()
    assert "rollout exceeded its progress deadline" in [f.message for f in health.findings]
    del platform.kube.objects[("deployments", "veza", SERVICE)]
    health = check(platform)
    assert health.workloads().loc[SERVICE, "ready"] is None
    assert [f.message for f in health.findings] == ["no deployment"]


def test_the_live_colour_is_the_deployment_checked(platform: Platform) -> None:
    platform.kube.add("deployments", deployment(f"{SERVICE}-green", image("v1.7.0"), ready=0,
                                                labels={"app": SERVICE, "color": "green"}))
    platform.kube.update("deployments", SERVICE, lambda d: d["spec"]["template"]["metadata"]["labels"].update(color="blue"))
    platform.kube.update("services", SERVICE, lambda s: s["spec"]["selector"].update(color="blue"))
    assert check(platform).workloads().loc[SERVICE, "deployment"] == SERVICE
    platform.kube.update("services", SERVICE, lambda s: s["spec"]["selector"].update(color="green"))
    assert check(platform).workloads().loc[SERVICE, "deployment"] == f"{SERVICE}-green"


def test_warning_events_are_a_warning(platform: Platform) -> None:
    platform.kube.add("events", event("e1", "BackOff", involved="x"))
    platform.kube.add("events", event("e2", "Scheduled", involved="x", type_="Normal"))
    health = check(platform)
    assert len(health.events()) == 2
    assert [f.message for f in health.findings] == ["1 warning event(s) in 5 min: BackOff"]  # the default window


def test_golden_signals_below_the_slo_fail_and_silence_warns(platform: Platform) -> None:
    platform.prom.answer(r"^1 - ", 0.95)
    health = check(platform)
    health.golden_signals()
    assert health.findings[0].message == "success rate 95.00 % (SLO ≥ 99 %), p99 42 ms (SLO ≤ 500 ms)"
    platform.prom.answers.clear()
    health = check(platform)
    health.golden_signals()
    assert [(f.severity, f.message) for f in health.findings] == [("warn", "no traffic data over 1m")]


def test_vault_sealed_or_unreachable_is_a_failure(platform: Platform) -> None:
    platform.vault.sealed = True
    health = check(platform)
    assert health.vault().loc[0, "sealed"]
    assert [f.message for f in health.findings] == ["sealed"]
    with HTTPStub() as gone:
        url = gone.url
    profile = profile_for(platform.home / "kubeconfig", vault_url=url, prometheus_url=platform.prom.url, port=1)
    from .conftest import make_ctx

    health = HealthCheck(make_ctx(profile, platform.home, "health_check"))
    assert not health.vault().loc[0, "reachable"]
    assert health.findings[0].message == f"unreachable at {url}"


def test_the_plot_draws_no_data_instead_of_failing(platform: Platform) -> None:
    platform.prom.answers.clear()
    figure = check(platform).plot_golden_signals(minutes=1)
    assert [ax.get_title() for ax in figure.axes] == ["requests/s", "success rate %", "p99 ms"]
