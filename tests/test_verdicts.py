"""What the runbooks know about versions: read from images, from records and from ReplicaSets."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from runbooks_lib.run.context import SUMMARY_MIME
from runbooks_lib.errors import ParameterError
from runbooks_lib.platform.images import version_of_image
from runbooks_lib.platform.rollout import Revision, history_table
from runbooks_lib.procedures.judging.verdicts import VERDICT_ANNOTATION, Verdict, known_verdicts, newest_known_good, refuse_known_bad


@pytest.mark.parametrize("image, version", [
    ("registry.veza.app/veza-backend-api:v1.6.0", "v1.6.0"),
    ("registry.local:5000/veza-frontend", None),  # a registry port is not a tag
    ("registry.local:5000/veza-frontend:1.2", "1.2"),
    ("registry.veza.app/veza-chat-server@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b", "sha256:9f86d081884c"),
    ("nginx", None),
    (None, None),
])
def test_the_version_is_read_from_the_image(image: str | None, version: str | None) -> None:
    assert version_of_image(image) == version


def revision(number: int, version: str, label: str | None = None, verdict: dict | None = None) -> Revision:
    annotations = {VERDICT_ANNOTATION: json.dumps(verdict)} if verdict else {}
    return Revision(number, f"rs-{number}", f"registry.veza.app/x:{version}", version, None, None, 0, {},
                    label_version=label or version, pod_template_hash=f"h{number}", annotations=annotations)


def test_a_stale_label_is_a_warning_not_the_version() -> None:
    stale = revision(9, "v1.6.0", label="v1.5.1-errors")
    assert stale.version == "v1.6.0"
    assert "label version=v1.5.1-errors disagrees with the image (v1.6.0)" in (stale.label_warning or "")
    table = history_table([revision(8, "v1.5.0"), stale], current=9, verdicts={"v1.5.0": "good: deployed"})
    assert table.loc[9, "version (image)"] == "v1.6.0" and table.loc[9, "warning"]
    assert table.loc[8, "warning"] == "" and table.loc[8, "known"] == "good: deployed"


def verdict(version: str, kind: str, at: str = "2026-12-01T10:00:00Z", record: str | None = "sandbox/r.ipynb") -> Verdict:
    return Verdict("x", version, kind, f"{kind} because", at, "run1", record)  # type: ignore[arg-type]


def test_the_proposal_is_the_newest_good_revision_then_the_newest_not_known_bad() -> None:
    revisions = [revision(1, "v1.4.0"), revision(2, "v1.5.0"), revision(3, "v1.5.1-errors"), revision(4, "v1.6.0")]
    verdicts = {"v1.5.1-errors": verdict("v1.5.1-errors", "bad"), "v1.4.0": verdict("v1.4.0", "good")}
    assert newest_known_good(revisions, 4, verdicts, "v1.6.0").number == 1  # good beats unknown
    assert newest_known_good(revisions, 4, {"v1.5.1-errors": verdicts["v1.5.1-errors"]}, "v1.6.0").number == 2
    assert newest_known_good(revisions[2:], 4, verdicts, "v1.6.0") is None


def test_a_known_bad_target_is_refused_with_the_record_and_a_proposal() -> None:
    bad = verdict("v1.5.1-errors", "bad")
    with pytest.raises(ParameterError) as refused:
        refuse_known_bad(bad, what="to roll x back to revision 3", allow_known_bad=False, reason="",
                         reason_parameter="reason", proposal="Try -p to_revision 2.")
    message = str(refused.value)
    assert "v1.5.1-errors is known bad: bad because (record sandbox/r.ipynb" in message
    assert "Try -p to_revision 2." in message and "-p allow_known_bad True -p reason" in message
    with pytest.raises(ParameterError, match="allow_known_bad needs a reason"):
        refuse_known_bad(bad, what="w", allow_known_bad=True, reason="  ", reason_parameter="reason", proposal="")
    note = refuse_known_bad(bad, what="w", allow_known_bad=True, reason="hotfix is config", reason_parameter="reason",
                            proposal="")
    assert note is not None and "hotfix is config" in note
    assert refuse_known_bad(verdict("v1.6.0", "good"), what="w", allow_known_bad=False, reason="",
                            reason_parameter="reason", proposal="") is None


def write_record(root: Path, name: str, summary: dict) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("summary = ctx.finish()")
    cell.outputs = [nbformat.v4.new_output("display_data", data={SUMMARY_MIME: summary, "text/plain": "summary"})]
    nb.cells.append(cell)
    path = root / "sandbox" / "2026-12-01" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def summary(run_id: str, identity: str, started: str, verdicts: list[dict]) -> dict:
    return {"run_id": run_id, "runbook": "deploy", "env": "sandbox", "service": "x", "outcome": "failed",
            "started": started, "cluster": {"identity": identity}, "verdicts": verdicts}


def test_the_newest_verdict_of_this_cluster_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", str(tmp_path))
    entry = lambda version, kind, at: {"service": "x", "version": version, "verdict": kind, "why": kind, "at": at}
    write_record(tmp_path, "a.ipynb", summary("a", "uid-1", "2026-12-01T10:00:00Z",
                                              [entry("v2", "bad", "2026-12-01T10:00:05Z")]))
    write_record(tmp_path, "b.ipynb", summary("b", "uid-1", "2026-12-01T11:00:00Z",
                                              [entry("v2", "good", "2026-12-01T11:00:05Z")]))
    write_record(tmp_path, "c.ipynb", summary("c", "uid-OTHER", "2026-12-01T12:00:00Z",
                                              [entry("v3", "bad", "2026-12-01T12:00:05Z")]))
    known = known_verdicts("sandbox", "x", "uid-1")
    assert known["v2"].verdict == "good" and known["v2"].record.endswith("b.ipynb")  # redeployed since
    assert "v3" not in known  # another cluster (an earlier sandbox) says nothing about this one
    assert known_verdicts("sandbox", "x", None) == {}  # a lookup that cannot name its cluster trusts no record
    # The cluster's own memory counts too, and a newer annotation beats an older record.
    annotated = revision(5, "v2", verdict={"verdict": "bad", "why": "rolled back", "run": "z", "at": "2026-12-01T13:00:00Z"})
    known = known_verdicts("sandbox", "x", "uid-1", [annotated])
    assert known["v2"].bad and known["v2"].source == "replicaset rs-5"
