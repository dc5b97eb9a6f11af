"""rollout: history from ReplicaSets, kubectl's choice of revision, undo's JSON patch, waiting."""
from __future__ import annotations

import pytest

from runbooks_lib.errors import CheckFailed, NotFound, ParameterError, RunbookTimeout
from runbooks_lib.platform.rollout import CHANGE_CAUSE, choose_revision, history, set_image, undo, wait_for_rollout

from ..kube_stub import Request, deployment, replica_set
from .conftest import SERVICE, Platform, image


def test_history_is_read_from_the_owned_replica_sets_oldest_first(platform: Platform) -> None:
    # A ReplicaSet with the same labels but another owner is not part of this history.
    stranger = platform.kube.add("deployments", deployment("stranger", image("v9"), labels={"app": SERVICE}))
    platform.kube.add("replicasets", replica_set(stranger, 7, image("v9")))
    revisions = history(platform.cluster(), SERVICE)
    assert [(r.number, r.version, r.replicas) for r in revisions] == [(1, "v1.4.0", 0), (2, "v1.5.0", 0), (3, "v1.6.0", 2)]
    assert revisions[0].replica_set == f"{SERVICE}-h1" and revisions[0].pod_template_hash == "h1"
    assert all(r.label_warning is None for r in revisions)


def test_a_stale_version_label_is_shown_not_believed(platform: Platform) -> None:
    platform.kube.update("replicasets", f"{SERVICE}-h2",
                         lambda rs: rs["spec"]["template"]["metadata"]["labels"].update(version="v1.5.1-errors"))
    second = history(platform.cluster(), SERVICE)[1]
    assert second.version == "v1.5.0" and second.label_version == "v1.5.1-errors"
    assert "disagrees with the image" in (second.label_warning or "")


def test_choose_revision_follows_kubectl(platform: Platform) -> None:
    revisions = history(platform.cluster(), SERVICE)
    assert choose_revision(revisions, 3, None).number == 2
    assert choose_revision(revisions, 3, 1).number == 1
    with pytest.raises(NotFound, match="unable to find revision 9; revisions available: 1, 2, 3"):
        choose_revision(revisions, 3, 9)
    with pytest.raises(NotFound, match="no previous revision"):
        choose_revision(revisions, 1, None)


def test_undo_copies_the_template_back_without_its_hash_as_one_json_patch(platform: Platform) -> None:
    platform.kube.update("replicasets", f"{SERVICE}-h2",
                         lambda rs: rs["metadata"]["annotations"].update({CHANGE_CAUSE: "release 1.5"}))
    target, after = undo(platform.cluster(), SERVICE)
    assert target.number == 2
    (write,) = platform.kube.writes
    assert write.method == "PATCH" and write.headers["content-type"].startswith("application/json-patch+json")
    ops = {op["path"]: op for op in write.body}
    assert set(ops) == {"/spec/template", "/metadata/annotations"} and {op["op"] for op in write.body} == {"replace"}
    template = ops["/spec/template"]["value"]
    assert template["spec"]["containers"][0]["image"] == image("v1.5.0")
    assert "pod-template-hash" not in template["metadata"]["labels"]
    assert ops["/metadata/annotations"]["value"][CHANGE_CAUSE] == "release 1.5"
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == image("v1.5.0")


def test_undo_refuses_a_paused_deployment_and_an_unknown_revision_before_any_change(platform: Platform) -> None:
    with pytest.raises(NotFound, match="unable to find revision 7"):
        undo(platform.cluster(), SERVICE, to_revision=7)
    platform.kube.update("deployments", SERVICE, lambda d: d["spec"].update(paused=True))
    with pytest.raises(ParameterError, match="is paused"):
        undo(platform.cluster(), SERVICE)
    assert platform.kube.writes == []


def test_undo_in_a_dry_run_is_checked_by_the_server_and_changes_nothing(platform: Platform) -> None:
    target, _ = undo(platform.cluster(dry_run=True), SERVICE)
    assert target.number == 2 and platform.kube.writes[0].query == {"dryRun": "All"}
    assert platform.kube.get("deployments", SERVICE)["spec"]["template"]["spec"]["containers"][0]["image"] == image("v1.6.0")


def test_set_image_is_one_strategic_merge_patch_with_label_and_cause(platform: Platform) -> None:
    set_image(platform.cluster(), SERVICE, SERVICE, image("v1.7.0"), version="v1.7.0", change_cause="ticket 1")
    (write,) = platform.kube.writes
    assert write.headers["content-type"].startswith("application/strategic-merge-patch+json")
    dep = platform.kube.get("deployments", SERVICE)
    assert dep["spec"]["template"]["spec"]["containers"] == [{"name": SERVICE, "image": image("v1.7.0")}]
    assert dep["spec"]["template"]["metadata"]["labels"]["version"] == "v1.7.0"
    assert dep["metadata"]["annotations"][CHANGE_CAUSE] == "ticket 1"


def _progress_after(platform: Platform, reads: int, change: dict) -> list[int]:
    """After ``reads`` GETs of the Deployment, its status changes to ``change`` (the controller's work)."""
    seen = [0]

    def hook(request: Request) -> None:
        if request.method == "GET" and request.path.endswith(f"/deployments/{SERVICE}"):
            seen[0] += 1
            if seen[0] == reads:
                platform.kube.update("deployments", SERVICE, lambda d: d["status"].update(change))

    platform.kube.hooks.append(hook)
    return seen


def test_wait_for_rollout_returns_once_kubectls_rule_holds(platform: Platform) -> None:
    platform.kube.update("deployments", SERVICE, lambda d: d["status"].update(updatedReplicas=1, availableReplicas=1,
                                                                              readyReplicas=1))
    seen = _progress_after(platform, 3, {"updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2})
    states = []
    state = wait_for_rollout(platform.cluster(), SERVICE, timeout_s=5, poll_s=0.01, on_progress=states.append)
    assert state.rolled_out and state.ready == 2 and seen[0] >= 3
    assert [s.updated for s in states][0] == 1 and states[-1].updated == 2


def test_wait_for_rollout_fails_on_progress_deadline_exceeded(platform: Platform) -> None:
    platform.kube.update("deployments", SERVICE, lambda d: d["status"].update(
        updatedReplicas=1, readyReplicas=1, availableReplicas=1,
        conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]))
    with pytest.raises(CheckFailed, match=rf"deployment {SERVICE} exceeded its progress deadline: 1/2 ready, 1 updated"):
        wait_for_rollout(platform.cluster(), SERVICE, timeout_s=5, poll_s=0.01)


def test_wait_for_rollout_times_out_saying_where_it_stands(platform: Platform) -> None:
    platform.kube.update("deployments", SERVICE, lambda d: d["status"].update(updatedReplicas=1))
    with pytest.raises(RunbookTimeout, match=rf"deployment {SERVICE} not rolled out after 0 s: 1 of 2 new replicas updated"):
        wait_for_rollout(platform.cluster(), SERVICE, timeout_s=0.2, poll_s=0.02)


def test_wait_for_rollout_stops_when_on_progress_raises(platform: Platform) -> None:
    platform.kube.update("deployments", SERVICE, lambda d: d["status"].update(updatedReplicas=1))

    def hopeless(_: object) -> None:
        raise CheckFailed("new pods cannot start: ImagePullBackOff")

    with pytest.raises(CheckFailed, match="ImagePullBackOff"):
        wait_for_rollout(platform.cluster(), SERVICE, timeout_s=5, poll_s=0.01, on_progress=hopeless)


def _set_template_image(dep: dict, version: str) -> None:
    template = dep["spec"]["template"]
    template["spec"]["containers"][0]["image"] = image(version)
    template["metadata"].setdefault("labels", {})["version"] = version


def test_a_change_whose_answer_was_lost_but_which_landed_is_read_back_and_carried_on(
        platform: Platform, capsys: pytest.CaptureFixture[str]) -> None:
    # The API server committed the change, then answered 500: the store has it, the client saw an error.
    platform.kube.update("deployments", SERVICE, lambda dep: _set_template_image(dep, "v1.7.0"))
    platform.kube.fail(rf"/deployments/{SERVICE}$", method="PATCH", status=500, times=1)
    after = set_image(platform.cluster(), SERVICE, SERVICE, image("v1.7.0"), version="v1.7.0")
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == image("v1.7.0")
    said = capsys.readouterr().out
    assert "(HTTP 500)" in said and f"read back: deployment/{SERVICE} has the change" in said
    # The stub logs every request that reached it, urllib3's own retries included: one PATCH.
    assert [w.method for w in platform.kube.writes].count("PATCH") == 1, "sent once, never a second time"


def test_a_change_whose_answer_was_lost_and_which_did_not_land_says_nothing_changed(platform: Platform) -> None:
    from runbooks_lib.errors import BackendUnavailable, MaybeApplied

    platform.kube.fail(rf"/deployments/{SERVICE}$", method="PATCH", status=500, times=1)
    with pytest.raises(BackendUnavailable, match="does not have the change, so nothing was applied") as raised:
        set_image(platform.cluster(), SERVICE, SERVICE, image("v1.7.0"), version="v1.7.0")
    assert not isinstance(raised.value, MaybeApplied)
    assert platform.kube.get("deployments", SERVICE)["spec"]["template"]["spec"]["containers"][0]["image"] != image("v1.7.0")


def test_a_lost_answer_with_the_object_unreadable_says_it_is_unknown_and_how_to_look(platform: Platform) -> None:
    from runbooks_lib.errors import MaybeApplied

    platform.kube.fail(rf"/deployments/{SERVICE}$", status=502)  # the patch and every read after it
    with pytest.raises(MaybeApplied, match="whether the change was applied is unknown.*kubectl rollout history"):
        set_image(platform.cluster(), SERVICE, SERVICE, image("v1.7.0"), version="v1.7.0")


def test_a_change_left_unanswered_which_landed_is_read_back_and_carried_on(
        platform: Platform, capsys: pytest.CaptureFixture[str]) -> None:
    platform.kube.update("deployments", SERVICE, lambda dep: _set_template_image(dep, "v1.7.0"))
    platform.kube.fail(rf"/deployments/{SERVICE}$", method="PATCH", drop=True, times=1)  # no reply at all
    set_image(platform.cluster(), SERVICE, SERVICE, image("v1.7.0"), version="v1.7.0")
    said = capsys.readouterr().out
    assert "no answer from the API server" in said and f"read back: deployment/{SERVICE} has the change" in said
    # The stub logs every request that reached it, urllib3's own retries included: one PATCH.
    assert [w.method for w in platform.kube.writes].count("PATCH") == 1, "sent once, never a second time"
