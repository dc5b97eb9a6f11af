"""deploy: parameters, the pre-deployment checklist, known-bad refusal, secrets, rollout, automatic rollback."""
from __future__ import annotations

import base64
import json

import pytest

from runbooks_lib.run.context import _validate
from runbooks_lib.platform.vault import vault_key_to_secret_key
from runbooks_lib.procedures.deploy.release import DeployParams, DeployRun, diff_objects
from runbooks_lib.errors import (BackendUnavailable, CheckFailed, LockHeld, NoData, ParameterError, ProfileError,
                                 RunbookTimeout)
from runbooks_lib.procedures.judging.verdicts import VERDICT_ANNOTATION

from ..kube_stub import pod
from .conftest import SERVICE, Platform, image


def deploy(platform: Platform, **params: object) -> DeployRun:
    values = DeployParams(**{"service": SERVICE, "version": "v1.7.0", "analysis_s": 0, **params})  # type: ignore[arg-type]
    return DeployRun(platform.ctx("deploy", **values.model_dump()), values)


# -- parameters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("params, complaint", [
    ({"version": "v1.7.0; rm -rf /"}, "version: String should match pattern"),
    ({"version": ""}, "version: String should match pattern"),
    ({"strategy": "canary"}, "strategy: Input should be 'rolling' or 'blue-green'"),
    ({"analysis_s": -1}, "analysis_s: Input should be greater than or equal to 0"),
    ({"versoin": "v1"}, "versoin: Extra inputs are not permitted"),
    ({"service": None}, "service: Input should be a valid string"),
])
def test_bad_parameters_are_refused_with_what_is_wrong(params: dict, complaint: str) -> None:
    with pytest.raises(ParameterError, match="invalid parameters: ") as refused:
        _validate(DeployParams, {"service": SERVICE, "version": "v1.7.0", **params})
    assert complaint in str(refused.value)


def test_an_unknown_service_is_a_profile_error_before_any_call(platform: Platform) -> None:
    with pytest.raises(ProfileError, match="unknown service 'veza-nope'"):
        deploy(platform, service="veza-nope")


def test_helpers() -> None:
    assert vault_key_to_secret_key("database_url") == "database-url"
    before = {"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}}
    assert diff_objects(before, before) == "(no change)"
    assert "-  replicas: 1\n+  replicas: 2" in diff_objects(before, {**before, "spec": {"replicas": 2}})


# -- the checklist ------------------------------------------------------------------------------

def test_the_checklist_passes_with_each_item_and_its_detail(platform: Platform) -> None:
    table = deploy(platform).checklist()
    assert set(table["status"]) == {"pass", "n/a"}
    assert table.loc["new version differs from the running one", "detail"] == \
        f"running {image('v1.6.0')}, deploying {image('v1.7.0')}"
    assert table.loc["Prometheus reachable and alert rules loaded", "detail"].startswith("2 alert rules: HighErrorRate")
    assert table.loc["staging already runs this version", "status"] == "n/a"
    assert platform.kube.writes == []  # a checklist only reads


@pytest.mark.parametrize("change, failing", [
    (lambda p: None, "new version differs from the running one: running"),
    (lambda p: p.kube.update("deployments", SERVICE, lambda d: d["status"].update(readyReplicas=1)),
     "no rollout in progress: 1/2 ready"),
    (lambda p: p.prom.fail(r"/api/v1/rules", status=503), "Prometheus reachable and alert rules loaded"),
])
def test_a_failing_item_stops_the_deploy_naming_it(platform: Platform, change, failing: str) -> None:
    change(platform)
    version = "v1.6.0" if "differs" in failing else "v1.7.0"
    with pytest.raises(CheckFailed, match="pre-deployment checklist failed: ") as failed:
        deploy(platform, version=version).checklist()
    assert failing in str(failed.value)


def test_a_live_lock_of_another_run_is_a_refusal_not_a_checklist_failure(platform: Platform) -> None:
    from runbooks_lib.run.lock import DeployLock

    other = DeployLock(platform.cluster(), SERVICE, "run-other")
    other.acquire()
    try:
        with pytest.raises(LockHeld, match="another run \\(run-other\\) is changing veza-backend-api in sandbox"):
            deploy(platform).checklist()
    finally:
        other.release()


def test_a_version_the_cluster_knows_as_bad_is_refused_with_the_evidence(platform: Platform) -> None:
    platform.mark_verdict(2, "bad", "5xx above SLO")
    with pytest.raises(ParameterError) as refused:
        deploy(platform, version="v1.5.0").checklist()
    message = str(refused.value)
    assert message.startswith(f"refusing to deploy {SERVICE} v1.5.0: v1.5.0 is known bad: 5xx above SLO")
    assert "Deploy a fixed version instead." in message and "-p allow_known_bad True -p change_cause" in message
    with pytest.raises(ParameterError, match="allow_known_bad needs a change_cause"):
        deploy(platform, version="v1.5.0", allow_known_bad=True).checklist()
    assert platform.kube.writes == []


def test_an_override_of_a_known_bad_version_is_noted_in_the_record(platform: Platform) -> None:
    platform.mark_verdict(2, "bad", "5xx above SLO")
    run = deploy(platform, version="v1.5.0", allow_known_bad=True, change_cause="the bug was a config value")
    table = run.checklist()
    assert table.loc["version not known bad", "status"] == "pass"
    assert "proceeding because: the bug was a config value" in run.ctx.notes["override"]


def test_a_version_known_good_passes_saying_so(platform: Platform) -> None:
    platform.mark_verdict(2, "good", "deployed and passed")
    table = deploy(platform, version="v1.5.0").checklist()
    assert table.loc["version not known bad", "detail"] == "last verdict: good: deployed and passed"


# -- secrets ------------------------------------------------------------------------------------

def test_secrets_are_synced_from_vault_showing_hashes_only(platform: Platform) -> None:
    run = deploy(platform)
    table = run.sync_secrets()
    stored = platform.kube.get("secrets", "veza-secrets")
    assert base64.b64decode(stored["data"]["database-url"]).decode() == "postgres://u:hunter2@db/veza"
    assert set(table.index) == {"database-url", "jwt-secret"} and table["changed"].all()
    assert "hunter2" not in table.to_string() and "s3cret" not in table.to_string()
    assert run.ctx.figures["secret_keys_changed"] == 2
    again = deploy(platform).sync_secrets()
    assert not again["changed"].any() and again.loc["jwt-secret", "cluster sha256 before"] != "(absent)"


def test_a_dry_run_sync_is_checked_by_the_server_only(platform: Platform) -> None:
    deploy(platform, dry_run=True).sync_secrets()
    assert [w.query.get("dryRun") for w in platform.kube.writes] == ["All"]
    assert platform.kube.get("secrets", "veza-secrets") is None


def test_a_sealed_vault_stops_the_sync_before_the_cluster_is_touched(platform: Platform) -> None:
    platform.vault.sealed = True
    with pytest.raises(BackendUnavailable, match="sealed"):
        deploy(platform).sync_secrets()
    assert platform.kube.writes == []


# -- rollout ------------------------------------------------------------------------------------

def test_roll_out_sets_the_image_with_its_cause_and_waits(platform: Platform) -> None:
    platform.instant_controller()
    run = deploy(platform, change_cause="release 1.7", ticket="CHG-1")
    assert run.roll_out().startswith(f"{SERVICE} rolled out: revision 3, 2/2 ready")
    dep = platform.kube.get("deployments", SERVICE)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == image("v1.7.0")
    assert dep["metadata"]["annotations"]["kubernetes.io/change-cause"] == "release 1.7 (ticket CHG-1, run run-unit)"
    assert "+      - image: registry.veza.app/veza-backend-api:v1.7.0" in run.diffs[SERVICE]
    assert run.ctx.figures["time_to_healthy_s"] >= 0


def test_a_dry_run_roll_out_shows_the_diff_and_changes_nothing(platform: Platform) -> None:
    text = deploy(platform, dry_run=True).roll_out()
    assert text.startswith("dry run: the API server accepted the change") and "v1.7.0" in text
    assert platform.kube.get("deployments", SERVICE)["spec"]["template"]["spec"]["containers"][0]["image"] == image("v1.6.0")


def test_pods_that_cannot_start_fail_the_rollout_at_once(platform: Platform) -> None:
    platform.instant_controller(stuck=(SERVICE,))
    platform.kube.add("pods", pod("new-0", image("v1.7.0"), labels={"app": SERVICE, "version": "v1.7.0"},
                                  ready=False, waiting_reason="ImagePullBackOff"))
    with pytest.raises(CheckFailed, match="new pods of v1.7.0 cannot start: ImagePullBackOff"):
        deploy(platform).roll_out()


# -- verify and the automatic rollback ---------------------------------------------------------

def test_verify_checks_pods_smoke_and_signals_and_says_good(platform: Platform) -> None:
    platform.roll_forward("v1.7.0")
    run = deploy(platform)
    tables = run.verify()
    assert set(tables) == {"pods", "smoke", "signals"}
    assert tables["signals"].loc["v1.7.0", "success rate %"] == 100.0
    assert run.ctx.verdicts[-1]["verdict"] == "good" and run.ctx.figures["p99_ms"] == 42.0
    assert any('pod=~"veza-backend-api-h4-0|veza-backend-api-h4-1"' in q for q in platform.prom.queries())


def test_the_analysis_says_what_its_requests_could_rule_out(platform: Platform) -> None:
    """Requests counted since the window's start: 100 clean ones cannot rule out a 5 % error rate
    (Wald's SPRT needs 112), so the window runs to its end (at least 5 s) and says so; 200 decide
    at the first look."""
    platform.roll_forward("v1.7.0")
    platform.prom.answer(r"^\(sum \(http_requests_total", 100)
    run = deploy(platform)
    table = run.judge_metrics()
    assert table.loc["v1.7.0", "evidence"].startswith("weak: 100 requests cannot rule out 5 % errors; ~112 ")
    assert table.loc["v1.7.0", "ended by"] == "the window's end (5 s)"
    assert run.ctx.figures["judged_requests_needed"] == 112 and run.ctx.figures["decided_by_evidence"] is False
    assert run.ctx.figures["judged_window_s"] >= 5
    platform.prom.answer(r"^\(sum \(http_requests_total", 200)
    run = deploy(platform)
    table = run.judge_metrics()
    assert table.loc["v1.7.0", "evidence"].startswith("strong: 200 requests rule out 5 % errors")
    assert table.loc["v1.7.0", "ended by"] == "decision" and run.ctx.figures["judged_window_s"] < 3
    [window] = run.ctx.judged
    assert window["kind"] == "deploy analysis" and window["verdict"] == "pass" and window["requests"] == 200
    assert window["looks"][-1][1:] == [200, 0, 42.0]


def test_missed_slos_fail_with_the_numbers(platform: Platform) -> None:
    platform.roll_forward("v1.7.0")
    platform.prom.answer(r'^\(\(sum \(http_requests_total\{.*code=~"5\.\."', 20)  # 20 of 200 failed
    with pytest.raises(CheckFailed, match=r"v1.7.0: success rate 90.00 % \(SLO ≥ 99 %\), p99 42 ms"):
        deploy(platform).judge_metrics()
    platform.prom.answer(r"^\(sum \(http_requests_total", None)
    with pytest.raises(NoData, match="no traffic data for v1.7.0"):
        deploy(platform).judge_metrics()


def test_a_failed_check_rolls_back_marks_the_version_bad_and_says_so(platform: Platform) -> None:
    platform.roll_forward("v1.7.0")  # the bad version rolled out: revision 4
    platform.instant_controller()
    run = deploy(platform)
    run.changed = True  # as roll_out() leaves it once the new image is applied
    with pytest.raises(CheckFailed) as failed:
        with run.rollback_on_failure():
            raise CheckFailed("smoke checks failed: /api/v1/health: 10/10 failed")
    assert str(failed.value).startswith("smoke checks failed: /api/v1/health: 10/10 failed — rolled back to revision 3 (v1.6.0)")
    assert run.rollback is not None and run.rollback.versions_seen == {"v1.6.0": 20}
    dep = platform.kube.get("deployments", SERVICE)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == image("v1.6.0")
    assert run.ctx.figures["rolled_back"] is True and run.ctx.figures["time_to_rollback_s"] is not None
    assert run.ctx.verdicts[0]["version"] == "v1.7.0" and run.ctx.verdicts[0]["verdict"] == "bad"
    mark = json.loads(platform.kube.get("replicasets", f"{SERVICE}-h4")["metadata"]["annotations"][VERDICT_ANNOTATION])
    assert mark["verdict"] == "bad" and mark["run"] == "run-unit"
    assert [s.name for s in run.ctx.steps] == ["Automatic rollback"] and run.ctx.steps[0].outcome == "succeeded"


@pytest.mark.parametrize("failure", [RunbookTimeout("not rolled out"), NoData("no traffic")])
def test_timeouts_and_silence_roll_back_too(platform: Platform, failure: Exception) -> None:
    platform.roll_forward("v1.7.0")
    platform.instant_controller()
    run = deploy(platform)
    run.changed = True
    with pytest.raises(CheckFailed, match="rolled back to revision 3"):
        with run.rollback_on_failure():
            raise failure
    # A version nothing could judge (no data) is not remembered as bad; one that timed out is.
    assert [v["verdict"] for v in run.ctx.verdicts] == ([] if isinstance(failure, NoData) else ["bad"])
    assert ("not judged" in run.ctx.notes) == isinstance(failure, NoData)


@pytest.mark.parametrize("failure", [BackendUnavailable("Prometheus at x unreachable"), KeyboardInterrupt(),
                                     RuntimeError("a bug in a check")])
def test_any_failure_once_the_version_is_applied_rolls_back_without_a_verdict(platform: Platform,
                                                                              failure: BaseException) -> None:
    """Issue 25: anything but three named errors used to leave the new version live and unjudged."""
    platform.roll_forward("v1.7.0")
    platform.instant_controller()
    run = deploy(platform)
    run.changed = True
    with pytest.raises(CheckFailed, match="rolled back to revision 3"):
        with run.rollback_on_failure():
            raise failure
    assert platform.kube.get("deployments", SERVICE)["spec"]["template"]["spec"]["containers"][0]["image"] == image("v1.6.0")
    assert run.ctx.verdicts == [] and type(failure).__name__ in run.ctx.notes["not judged"]


def test_nothing_is_undone_before_the_change_landed_or_in_a_dry_run(platform: Platform) -> None:
    platform.roll_forward("v1.7.0")
    writes = len(platform.kube.writes)
    with pytest.raises(BackendUnavailable):
        with deploy(platform).rollback_on_failure():  # set_image never landed: the live release stays
            raise BackendUnavailable("the API server did not answer")
    with pytest.raises(CheckFailed, match="^boom$"):
        with deploy(platform, dry_run=True).rollback_on_failure():
            raise CheckFailed("boom")
    assert len(platform.kube.writes) == writes
