"""rollback: RollbackRun's history, plan (refusals, known-bad with a proposal, override), run and verify."""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from runbooks_lib.errors import CheckFailed, LockHeld, ParameterError
from runbooks_lib.procedures.rollback import RollbackParams, RollbackRun
from runbooks_lib.procedures.judging.verdicts import VERDICT_ANNOTATION

from .conftest import SERVICE, Platform, image


def rollback(platform: Platform, dry_run: bool = False, **options: object) -> RollbackRun:
    ctx = platform.ctx("rollback", service=SERVICE, dry_run=dry_run)
    run = RollbackRun(ctx, RollbackParams(service=SERVICE, verify_s=0, dry_run=dry_run, **options))  # type: ignore[arg-type]
    run.history()
    return run


def test_history_shows_each_revision_with_what_is_known(platform: Platform) -> None:
    platform.mark_verdict(1, "good", "passed checks")
    run = RollbackRun(platform.ctx("rollback", service=SERVICE), RollbackParams(service=SERVICE))
    table = run.history()
    rows = {row["revision"]: row for row in table.rows}
    assert list(rows) == [1, 2, 3] and run.current == 3
    assert rows[3]["current"] and rows[1]["known"] == "good: passed checks" and rows[2]["known"] == ""
    assert "Revision history of veza-backend-api" in repr(table) and "good: passed checks" in table._repr_html_()


def test_the_plan_is_the_previous_revision_by_default(platform: Platform) -> None:
    run = rollback(platform)
    assert run.plan() == (f"{SERVICE}: revision 3 (v1.6.0) → revision 2 (v1.5.0, {image('v1.5.0')}; "
                          "no verdict on record)")
    assert run.target is not None and run.target.number == 2


@pytest.mark.parametrize("to_revision, refusal", [
    (3, "revision 3 is already the current one"),
    (9, "nothing to roll back to for veza-backend-api: unable to find revision 9"),
])
def test_impossible_targets_are_refused_before_any_change(platform: Platform, to_revision: int, refusal: str) -> None:
    with pytest.raises(ParameterError, match=refusal):
        rollback(platform, to_revision=to_revision).plan()
    assert platform.kube.writes == []


@pytest.mark.parametrize("verify_s", [-2.0, float("nan"), float("inf"), 601])
def test_a_verification_window_below_zero_is_refused_before_anything_is_read(platform: Platform,
                                                                              verify_s: float) -> None:
    # The schema refuses it, in start(), before a profile or the cluster is read (exit 2).
    with pytest.raises(ValidationError, match="verify_s"):
        RollbackParams(service=SERVICE, verify_s=verify_s)
    assert platform.kube.requests == [] and platform.kube.writes == []


def test_no_history_is_refused(platform: Platform) -> None:
    for number in (1, 2):
        del platform.kube.objects[("replicasets", "veza", f"{SERVICE}-h{number}")]
    with pytest.raises(ParameterError, match="no previous revision to roll back to"):
        rollback(platform).plan()


def test_a_known_bad_target_is_refused_with_a_proposal(platform: Platform) -> None:
    platform.mark_verdict(2, "bad", "deploy failed and rolled back")
    with pytest.raises(ParameterError) as refused:
        rollback(platform).plan()
    message = str(refused.value)
    assert "refusing to roll veza-backend-api back to revision 2: v1.5.0 is known bad: deploy failed" in message
    assert "The newest revision not known bad is 1 (v1.4.0, no verdict on record): -p to_revision 1." in message
    assert rollback(platform, to_revision=1).plan().endswith("revision 1 (v1.4.0, " + image("v1.4.0") + "; no verdict on record)")


def test_when_every_other_revision_is_bad_the_proposal_is_to_roll_forward(platform: Platform) -> None:
    platform.mark_verdict(1, "bad", "old")
    platform.mark_verdict(2, "bad", "older")
    with pytest.raises(ParameterError, match="roll forward with a fixed version"):
        rollback(platform).plan()


def test_an_override_needs_a_reason_and_is_noted(platform: Platform) -> None:
    platform.mark_verdict(2, "bad", "deploy failed")
    with pytest.raises(ParameterError, match="allow_known_bad needs a reason"):
        rollback(platform, allow_known_bad=True).plan()
    run = rollback(platform, allow_known_bad=True, reason="3 is worse")
    run.plan()
    assert "proceeding because: 3 is worse" in run.ctx.notes["override"]


def test_run_without_a_plan_is_refused(platform: Platform) -> None:
    with pytest.raises(ParameterError, match="run plan\\(\\) before run\\(\\)"):
        rollback(platform).run()


def test_run_rolls_back_under_the_lock_and_measures(platform: Platform) -> None:
    platform.instant_controller()
    run = rollback(platform)
    run.plan()
    text = run.run()
    assert text.startswith("rolled back to revision 2 (v1.5.0): it serves 100 % ({'v1.5.0': 20})")
    assert run.ctx.figures["to_revision"] == 2 and run.ctx.figures["time_to_rollback_s"] >= 0
    leases = [w for w in platform.kube.writes if "/leases" in w.path]
    assert [w.method for w in leases] == ["POST", "DELETE"]  # taken, then given back
    assert platform.kube.get("deployments", SERVICE)["spec"]["template"]["spec"]["containers"][0]["image"] == image("v1.5.0")


def test_a_dry_run_is_checked_by_the_server_and_changes_nothing(platform: Platform) -> None:
    run = rollback(platform, dry_run=True)
    run.plan()
    assert run.run().startswith("dry run: the API server accepted the rollback to revision 2")
    assert [w.query.get("dryRun") for w in platform.kube.writes] == ["All"]
    assert list(run.verify()) == ["dry run"]


def test_a_held_lock_refuses_the_rollback(platform: Platform) -> None:
    from runbooks_lib.run.lock import DeployLock

    run = rollback(platform)
    run.plan()
    other = DeployLock(platform.cluster(), SERVICE, "run-other")
    other.acquire()
    try:
        with pytest.raises(LockHeld, match="held by run-other"):
            run.run()
    finally:
        other.release()
    assert not any("/deployments/" in w.path for w in platform.kube.writes)


def _rolled_back(platform: Platform) -> RollbackRun:
    platform.instant_controller()
    run = rollback(platform, reason="bad release")
    run.plan()
    run.run()
    platform.app.serving = lambda: "v1.5.0"
    for i in range(2):  # the target's pods, as the ReplicaSet controller would make them
        from ..kube_stub import pod

        platform.kube.add("pods", pod(f"{SERVICE}-h2-{i}", image("v1.5.0"),
                                      labels={"app": SERVICE, "version": "v1.5.0", "pod-template-hash": "h2"}))
    return run


def _served_before(platform: Platform, requests: float, errors: float) -> None:
    """What Prometheus kept of the undone revision's pods (veza-backend-api-h3-*) before the rollback."""
    pods = rf'job="{SERVICE}",pod=~"{SERVICE}-h3-'
    platform.prom.answer(rf"^sum \(increase\(http_requests_total\{{{pods}", requests)
    platform.prom.answer(rf"^\(sum \(increase\(http_requests_total\{{{pods}", errors)


def test_verify_means_recovered_and_a_rollback_without_failing_evidence_blames_nobody(platform: Platform) -> None:
    run = _rolled_back(platform)
    _served_before(platform, requests=300, errors=0)
    tables = run.verify()
    assert set(tables) == {"pods", "signals", "smoke"} and list(tables["pods"].index) == [f"{SERVICE}-h2-0", f"{SERVICE}-h2-1"]
    assert [(v["version"], v["verdict"]) for v in run.ctx.verdicts] == [("v1.5.0", "good")]
    assert run.ctx.notes["not blamed"].startswith("v1.6.0 rolled back, not blamed: success 100.00 % of 300 requests")
    assert run.ctx.notes["not blamed"].endswith(": bad release")  # the operator's reason, in words
    undone = platform.kube.get("replicasets", f"{SERVICE}-h3")["metadata"]["annotations"]
    assert VERDICT_ANNOTATION not in undone
    # Its signals were read as they were when the undo was applied, after the fact.
    asked = [r for r in platform.prom.requests if f"{SERVICE}-h3-" in r.query.get("query", "")]
    assert asked and all(abs(float(r.query["time"]) - (run.changed_at or 0)) < 0.01 for r in asked)


def test_a_version_whose_own_signals_failed_before_the_rollback_is_marked_bad(platform: Platform) -> None:
    run = _rolled_back(platform)
    _served_before(platform, requests=300, errors=24)
    run.verify()
    assert [(v["version"], v["verdict"]) for v in run.ctx.verdicts] == [("v1.5.0", "good"), ("v1.6.0", "bad")]
    assert "its own signals failed the SLOs before run run-unit rolled it back: success 92.00 % of 300 requests" \
        in run.ctx.verdicts[1]["why"]
    undone = json.loads(platform.kube.get("replicasets", f"{SERVICE}-h3")["metadata"]["annotations"][VERDICT_ANNOTATION])
    assert undone["verdict"] == "bad"


def test_an_operator_may_declare_the_version_defective(platform: Platform) -> None:
    platform.instant_controller()
    run = rollback(platform, reason="corrupts uploads", defective=True)
    run.plan()
    run.run()
    platform.app.serving = lambda: "v1.5.0"
    from ..kube_stub import pod

    for i in range(2):
        platform.kube.add("pods", pod(f"{SERVICE}-h2-{i}", image("v1.5.0"),
                                      labels={"app": SERVICE, "version": "v1.5.0", "pod-template-hash": "h2"}))
    _served_before(platform, requests=300, errors=0)  # healthy numbers: the operator knows better
    run.verify()
    assert [(v["version"], v["verdict"]) for v in run.ctx.verdicts] == [("v1.5.0", "good"), ("v1.6.0", "bad")]
    assert "declared defective" in run.ctx.verdicts[1]["why"] and "corrupts uploads" in run.ctx.verdicts[1]["why"]


def test_without_data_before_the_rollback_the_version_is_not_blamed(platform: Platform) -> None:
    run = _rolled_back(platform)
    run.verify()
    assert [(v["version"], v["verdict"]) for v in run.ctx.verdicts] == [("v1.5.0", "good")]
    assert "no request was served by veza-backend-api-h3" in run.ctx.notes["not blamed"]


def test_a_target_missing_its_slos_fails_the_rollback_and_is_marked_bad(platform: Platform) -> None:
    run = _rolled_back(platform)
    platform.prom.answer(r'^\(\(sum \(http_requests_total\{.*code=~"5\.\."', 100)  # 100 of its 200 requests failed
    platform.app.fail(r"/api/v1/health", status=500)
    with pytest.raises(CheckFailed) as failed:
        run.verify()
    message = str(failed.value)
    assert message.startswith("the rollback to revision 2 (v1.5.0) did not recover veza-backend-api: golden signals: ")
    assert "success rate 50.00 %" in message and "smoke checks failed" in message
    assert [(v["version"], v["verdict"]) for v in run.ctx.verdicts] == [("v1.5.0", "bad")]



# -- the window judged: the traffic the target served during the rollout counts ------------------

def _pod_times(platform: Platform, ready: str, started: str, restarts: int = 0) -> None:
    for i in range(2):
        status = platform.kube.get("pods", f"{SERVICE}-h2-{i}")["status"]
        status["conditions"][0]["lastTransitionTime"] = ready
        status["containerStatuses"][0]["state"] = {"running": {"startedAt": started}}
        status["containerStatuses"][0]["restartCount"] = restarts


def _utc(seconds: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_traffic_served_since_the_first_target_pod_was_ready_is_judged(platform: Platform) -> None:
    import time

    run = _rolled_back(platform)
    run.verify_s = 5
    run.changed_at = time.time() - 30
    _pod_times(platform, ready=_utc(run.changed_at + 2), started=_utc(run.changed_at + 1))
    platform.prom.answer(r"^sum \(http_requests_total", 240)  # every request the two pods served
    platform.prom.answer(r'code=~"5\.\."', 1)
    platform.prom.answer(r"^min\(timestamp\(up", time.time())  # both scraped just now
    began = time.monotonic()
    tables = run.verify()
    assert time.monotonic() - began < 3  # 28 s of traffic already served: nothing left to observe
    row = tables["signals"].iloc[0]
    assert row["requests"] == 240 and row["success rate %"] == round(100 * (1 - 1 / 240), 2)
    # Kubernetes keeps whole seconds: the window starts one second after the stated Ready time.
    assert row["window"].startswith(_utc(run.changed_at + 3).replace("Z", ".000Z") + " → ")
    assert "since the first pod of v1.5.0 was ready" in row["window"]
    assert 26 < run.ctx.figures["judged_window_s"] < 29 and run.ctx.figures["judged_requests"] == 240
    # 239 good answers of 240 meet the 99 % SLO and also rule out a 5 % error rate (Wald's SPRT).
    assert row["evidence"].startswith("strong: 240 requests rule out 5 % errors")
    assert run.ctx.figures["judged_requests_needed"] <= 240


def test_too_many_errors_in_the_served_traffic_fail_the_rollback(platform: Platform) -> None:
    import time

    run = _rolled_back(platform)
    run.changed_at = time.time() - 30
    _pod_times(platform, ready=_utc(run.changed_at + 2), started=_utc(run.changed_at + 1))
    platform.prom.answer(r"^sum \(http_requests_total", 200)
    platform.prom.answer(r'code=~"5\.\."', 16)
    platform.prom.answer(r"^min\(timestamp\(up", time.time())
    with pytest.raises(CheckFailed, match=r"success rate 92\.00 % .* over .*since the first pod of v1.5.0 was ready"):
        run.verify()


@pytest.mark.parametrize("started_before, restarts", [(True, 0), (False, 1)])
def test_pods_older_than_the_rollback_or_restarted_are_observed_from_now(
        platform: Platform, capsys: pytest.CaptureFixture[str], started_before: bool, restarts: int) -> None:
    import time

    run = _rolled_back(platform)
    run.changed_at = time.time() - 30
    started = run.changed_at - 60 if started_before else run.changed_at + 1
    _pod_times(platform, ready=_utc(run.changed_at + 2), started=_utc(started), restarts=restarts)
    tables = run.verify()
    row = tables["signals"].iloc[0]
    # The counters from now: 200 clean requests decide at the first look (Wald's SPRT needs 112).
    assert row["window"].endswith(" s observed from now)") and row["ended by"] == "decision"
    assert row["requests"] == 200 and run.ctx.figures["judged_window_s"] < 3
    assert "observing v1.5.0 from now" in capsys.readouterr().out
    assert any("@ " in q and "http_requests_total" in q for q in platform.prom.queries())


def test_serving_since_keeps_the_window_honest() -> None:
    from runbooks_lib.procedures.judging.judgement import serving_since

    def pod(ready: str, started: str, restarts: int = 0) -> dict:
        return {"status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready}],
                           "containerStatuses": [{"restartCount": restarts, "state": {"running": {"startedAt": started}}}]}}

    change = 1_800_000_000.4
    first, second = pod("2027-01-15T08:00:02Z", "2027-01-15T08:00:01Z"), pod("2027-01-15T08:00:04.250Z", "2027-01-15T08:00:03Z")
    assert serving_since([first, second], change) == change - 0.4 + 3  # whole seconds: one later
    assert serving_since([second], change) == change - 0.4 + 4.25  # sub-second times as they are
    assert serving_since([first, pod("2027-01-15T08:00:02Z", "2027-01-15T07:59:59Z")], change) is None
    assert serving_since([first, pod("2027-01-15T08:00:02Z", "2027-01-15T08:00:01Z", restarts=1)], change) is None
    assert serving_since([{"status": {"conditions": [{"type": "Ready", "status": "False"}]}}], change) is None
