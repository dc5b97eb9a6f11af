"""incident.mitigation: a rollback mitigation restores service, on this cluster's verdicts only."""
from __future__ import annotations

from pathlib import Path

import pytest

from runbooks_lib.errors import ParameterError
from runbooks_lib.procedures.incident.mitigation import execute_mitigation, plan_mitigation, safe_rollback_target

from ..test_verdicts import summary, write_record
from .conftest import SERVICE, Platform


def plan(to_revision: int | None) -> object:
    return plan_mitigation("rollback", SERVICE, SERVICE, to_revision=to_revision, reason="error rate rose after v1.6.0")


def test_a_known_bad_first_target_goes_to_the_newest_known_good_revision(platform: Platform) -> None:
    platform.mark_verdict(2, "bad", "deploy failed its checks")
    platform.mark_verdict(1, "good", "passed checks")
    safe, moved = safe_rollback_target(platform.cluster(), platform.profile, plan(2), "uid-1")  # type: ignore[arg-type]
    assert safe.to_revision == 1
    assert moved is not None and moved.startswith("revision 2 (v1.5.0) is known bad: deploy failed its checks")
    assert "rolling back to revision 1 (v1.4.0) instead, the newest known good: passed checks" in moved
    assert moved in safe.reason and safe.reason.startswith("error rate rose after v1.6.0")
    # A target not known bad is left as the correlation chose it.
    assert safe_rollback_target(platform.cluster(), platform.profile, plan(1), "uid-1") == (plan(1), None)  # type: ignore[arg-type]


def test_without_a_revision_free_of_a_bad_verdict_the_rollback_is_refused(platform: Platform) -> None:
    platform.mark_verdict(2, "bad", "deploy failed its checks")
    platform.mark_verdict(1, "bad", "canary aborted")
    with pytest.raises(ParameterError, match="v1.5.0 is known bad.*No revision is free of a bad verdict"):
        safe_rollback_target(platform.cluster(), platform.profile, plan(None), "uid-1")  # type: ignore[arg-type]


def test_records_of_another_cluster_never_refuse_a_target(platform: Platform, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout where sandboxes came and went: an earlier cluster's records said v1.5.0 was bad."""
    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", str(tmp_path))
    bad = {"service": SERVICE, "version": "v1.5.0", "verdict": "bad", "why": "rolled back", "at": "2026-12-01T10:00:05Z"}
    write_record(tmp_path, "other.ipynb", {**summary("other", "uid-OTHER", "2026-12-01T10:00:00Z", [bad]),
                                           "service": SERVICE})
    write_record(tmp_path, "unknown.ipynb", {**summary("unknown", "", "2026-12-01T10:00:00Z", [bad]), "service": SERVICE,
                                             "cluster": {}})
    for identity in ("uid-1", None):
        safe, moved = safe_rollback_target(platform.cluster(), platform.profile, plan(2), identity)  # type: ignore[arg-type]
        assert (safe.to_revision, moved) == (2, None)
    # The same record from this cluster refuses it.
    write_record(tmp_path, "mine.ipynb", {**summary("mine", "uid-1", "2026-12-01T10:00:00Z", [bad]), "service": SERVICE})
    safe, moved = safe_rollback_target(platform.cluster(), platform.profile, plan(2), "uid-1")  # type: ignore[arg-type]
    assert safe.to_revision == 1 and moved and "record sandbox/2026-12-01/mine.ipynb" in moved


def test_an_approved_plan_that_became_unsafe_changes_nothing(platform: Platform) -> None:
    platform.mark_verdict(2, "bad", "deploy failed its checks")
    with pytest.raises(ParameterError, match="no longer safe: revision 2 \\(v1.5.0\\) is known bad"):
        execute_mitigation(platform.cluster(), platform.profile, plan(2), run_id="r1", execute=True,  # type: ignore[arg-type]
                           identity="uid-1")
    assert not any("/deployments/" in w.path for w in platform.kube.writes)
