"""bluegreen: prepare, deploy and test green, flip, monitor (flip back on failure), retire blue."""
from __future__ import annotations

import pytest

from runbooks_lib.procedures.deploy.bluegreen import BlueGreen
from runbooks_lib.procedures.deploy.release import DeployParams, DeployRun
from runbooks_lib.errors import CheckFailed

from ..kube_stub import pod
from .conftest import SERVICE, Platform, image

GREEN = f"{SERVICE}-green"


def blue_green(platform: Platform, dry_run: bool = False) -> BlueGreen:
    platform.instant_controller()
    params = DeployParams(service=SERVICE, version="v1.7.0", strategy="blue-green", analysis_s=0, monitor_s=0,
                          dry_run=dry_run)
    return BlueGreen(DeployRun(platform.ctx("deploy", **params.model_dump()), params))


def green_pods(platform: Platform) -> None:
    for i in range(2):
        platform.kube.add("pods", pod(f"{GREEN}-{i}", image("v1.7.0"),
                                      labels={"app": SERVICE, "color": "green", "version": "v1.7.0"}))


def selector(platform: Platform) -> dict:
    return platform.kube.get("services", SERVICE)["spec"]["selector"]


def test_prepare_labels_the_live_pods_blue_and_pins_the_service(platform: Platform) -> None:
    bg = blue_green(platform)
    assert (bg.live, bg.live_colour, bg.new) == (SERVICE, "blue", GREEN)
    assert bg.prepare() == (f"labelled {SERVICE}'s pods color=blue (rolling restart); "
                            f"pinned service {SERVICE} to color=blue")
    assert platform.kube.get("deployments", SERVICE)["spec"]["template"]["metadata"]["labels"]["color"] == "blue"
    assert selector(platform) == {"app": SERVICE, "color": "blue"}
    assert blue_green(platform).prepare() == f"{SERVICE} is blue and serves all traffic"


def test_green_is_created_beside_blue_tested_then_gets_the_traffic(platform: Platform) -> None:
    bg = blue_green(platform)
    bg.prepare()
    assert bg.deploy_new() == f"{GREEN} ready: 2/2 replicas of v1.7.0"
    green = platform.kube.get("deployments", GREEN)
    assert green["spec"]["selector"] == {"matchLabels": {"app": SERVICE, "color": "green"}}
    assert green["spec"]["template"]["spec"]["containers"][0]["image"] == image("v1.7.0")
    assert platform.serving_version() == "v1.6.0"  # green has no traffic before the flip
    green_pods(platform)
    tables = bg.test_new()
    assert list(tables["pods"].index) == [f"{GREEN}-0", f"{GREEN}-1"] and tables["smoke"]["failed"].sum() == 0
    assert bg.flip_to_new().startswith(f"service {SERVICE} now selects color=green: v1.7.0 serves 100 %")
    assert selector(platform)["color"] == "green" and bg.deploy.ctx.figures["flip_s"] >= 0
    table = bg.monitor()
    assert table.loc["v1.7.0", "pods"] == 2 and bg.deploy.ctx.verdicts[-1]["verdict"] == "good"
    assert bg.retire_live() == f"deleted {SERVICE}; {GREEN} (v1.7.0) serves {SERVICE}"
    assert platform.kube.get("deployments", SERVICE) is None


def test_a_green_failing_before_the_flip_is_deleted_and_blue_keeps_serving(platform: Platform) -> None:
    bg = blue_green(platform)
    bg.prepare()
    with pytest.raises(CheckFailed, match="no pods to check"):
        with bg.abandon_new_on_failure():
            bg.deploy_new()
            bg.test_new()  # no green pod answers
    assert platform.kube.get("deployments", GREEN) is None and selector(platform)["color"] == "blue"
    assert bg.deploy.ctx.figures["rolled_back"] is True and bg.deploy.ctx.verdicts[-1]["verdict"] == "bad"


def test_a_green_missing_its_slos_after_the_flip_is_flipped_back(platform: Platform) -> None:
    bg = blue_green(platform)
    bg.prepare()
    bg.deploy_new()
    green_pods(platform)
    bg.flip_to_new()
    platform.prom.answer(r'^\(\(sum \(http_requests_total\{.*code=~"5\.\."', 100)  # 100 of its 200 requests failed
    with pytest.raises(CheckFailed, match=r"success rate 50.00 % .* — flipped back to blue in [\d.]+ s and deleted "
                                          + GREEN):
        bg.monitor()
    assert selector(platform)["color"] == "blue" and platform.serving_version() == "v1.6.0"
    assert platform.kube.get("deployments", GREEN) is None
    assert [f.to_colour for f in bg.flips] == ["green", "blue"]
    assert bg.deploy.ctx.verdicts[-1]["verdict"] == "bad" and bg.deploy.ctx.figures["flip_back_s"] >= 0


def test_a_dry_run_moves_nothing(platform: Platform) -> None:
    bg = blue_green(platform, dry_run=True)
    bg.prepare()
    assert bg.deploy_new().startswith(f"dry run: {GREEN} would be created")
    assert bg.test_new() == {}
    assert bg.flip_to_new() == f"dry run: service {SERVICE} would select color=green"
    assert bg.monitor().iloc[0, 0] == "no traffic was moved; nothing to judge"
    assert {w.query.get("dryRun") for w in platform.kube.writes} == {"All"}
    assert platform.kube.get("deployments", GREEN) is None and "color" not in selector(platform)
