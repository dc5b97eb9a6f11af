"""What we already know about a version: known good, known bad, and the evidence.

A rollback must never make things worse, so before undoing (or deploying) the runbooks look the
target version up in two memories:

* the records catalog: every deploy, rollback and canary record states a verdict on the versions
  it judged (``RunContext.verdict``): a deploy that failed and rolled back, a version that was
  rolled back, a canary that was aborted, are ``bad``; a version that passed its checks is ``good``;
* the cluster's own history: the runbooks annotate the ReplicaSet of a version they judged
  (``runbooks.veza.app/verdict``), so the memory survives a lost laptop or records folder.

The newest verdict wins, so a version redeployed successfully (with the explicit override) is
good again. Records count only for the same environment and the same cluster (the identity the
guard checked; a lookup without one reads the cluster's annotations alone): a fresh sandbox is a
new cluster and starts with a clean slate.

A verdict comes from evidence: the version's own signals or checks (a failed deploy, an aborted
canary, a rollback target that did not recover, a version whose signals failed the SLOs before it
was rolled back), or an operator who declares it defective. Being rolled back is not evidence: a
drill, a freeze or an unwanted feature rolls back healthy versions.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Literal

from ...config.clock import iso, utcnow
from ...errors import ParameterError, RunbookError

if TYPE_CHECKING:
    from ...platform.cluster import Cluster
    from ...run.context import RunContext  # noqa: F401 (a type only; the context never imports this module)
    from ...platform.rollout import Revision

__all__ = ["Verdict", "VERDICT_ANNOTATION", "known_verdicts", "refuse_known_bad", "annotate_replica_set",
           "newest_known_good"]

VERDICT_ANNOTATION = "runbooks.veza.app/verdict"
Kind = Literal["good", "bad"]


@dataclass(frozen=True)
class Verdict:
    """One judgement of one version of one service."""

    service: str
    version: str
    verdict: Kind
    why: str
    at: str
    run_id: str | None = None
    record: str | None = None
    source: str = "records"

    @property
    def bad(self) -> bool:
        return self.verdict == "bad"

    def evidence(self) -> str:
        """Where the verdict comes from, in words: the record, or the ReplicaSet annotation."""
        where = f"record {self.record}" if self.record else (
            f"run {self.run_id}" if self.run_id else self.source)
        return f"{self.why} ({where}, {self.at})"

    def short(self) -> str:
        return f"{self.verdict}: {self.why}"


def _from_records(env: str, service: str, identity: str | None) -> Iterable[Verdict]:
    from ...records.catalog import Catalog, RecordFilter

    try:
        rows = Catalog().rows(RecordFilter(env=env))
    except (OSError, RunbookError):  # no records folder yet: nothing is known
        return []
    found = []
    for row in rows:
        if not identity or row.get("cluster_identity") != identity:
            # Another cluster's history (a previous sandbox), or a record that cannot say which
            # cluster it judged, says nothing about this one: it never refuses a target here.
            continue
        for entry in row.get("verdicts") or []:
            if entry.get("service") == service and entry.get("version") and entry.get("verdict") in ("good", "bad"):
                found.append(Verdict(service, entry["version"], entry["verdict"], str(entry.get("why") or ""),
                                     str(entry.get("at") or row.get("started") or ""), row.get("run_id"),
                                     row.get("record"), "records"))
    return found


def _from_cluster(service: str, revisions: Iterable["Revision"]) -> Iterable[Verdict]:
    found = []
    for revision in revisions:
        raw = revision.annotations.get(VERDICT_ANNOTATION)
        if not raw or not revision.version:
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if entry.get("verdict") in ("good", "bad"):
            found.append(Verdict(service, revision.version, entry["verdict"], str(entry.get("why") or ""),
                                 str(entry.get("at") or ""), entry.get("run"), None,
                                 f"replicaset {revision.replica_set}"))
    return found


def known_verdicts(env: str, service: str, identity: str | None,
                   revisions: Iterable["Revision"] = ()) -> dict[str, Verdict]:
    """The newest verdict per version of ``service``, from the records and the ReplicaSets' history."""
    newest: dict[str, Verdict] = {}
    for verdict in [*_from_records(env, service, identity), *_from_cluster(service, revisions)]:
        held = newest.get(verdict.version)
        if held is None or verdict.at > held.at:
            newest[verdict.version] = verdict
    return newest


def newest_known_good(revisions: list["Revision"], current: int, verdicts: dict[str, Verdict],
                      current_version: str | None = None) -> "Revision | None":
    """The revision to propose instead of a known-bad one: newest good, else newest not known bad."""
    candidates = [r for r in revisions if r.number != current and r.version and r.version != current_version]
    for wanted in ("good", None):
        for revision in sorted(candidates, key=lambda r: r.number, reverse=True):
            verdict = verdicts.get(revision.version or "")
            if (wanted == "good" and verdict is not None and not verdict.bad) or (wanted is None and verdict is None):
                return revision
    return None


def refuse_known_bad(verdict: Verdict | None, *, what: str, allow_known_bad: bool, reason: str,
                     reason_parameter: str, proposal: str) -> str | None:
    """Raise ParameterError (exit 2, nothing changed) for a known-bad target unless overridden.

    Returns the override note for the record when the operator overrode a known-bad verdict.
    """
    if verdict is None or not verdict.bad:
        return None
    if not allow_known_bad:
        raise ParameterError(
            f"refusing {what}: {verdict.version} is known bad: {verdict.evidence()}. {proposal} "
            f"To proceed anyway: -p allow_known_bad True -p {reason_parameter} '<why>'."
        )
    if not reason.strip():
        raise ParameterError(f"allow_known_bad needs a {reason_parameter}: say why {verdict.version} is wanted "
                             f"despite {verdict.evidence()}")
    return f"override: {verdict.version} is known bad ({verdict.evidence()}); proceeding because: {reason.strip()}"


def annotate_replica_set(cluster: "Cluster", replica_set: str, verdict: Kind, why: str, run_id: str) -> None:
    """Leave the verdict on the ReplicaSet, where the cluster's history keeps it (honours dry run)."""
    value = json.dumps({"verdict": verdict, "why": why[:300], "run": run_id, "at": iso(utcnow(), "seconds")}, separators=(",", ":"))
    patch = {"metadata": {"annotations": {VERDICT_ANNOTATION: value}}}
    cluster.patch_replica_set(replica_set, patch, what=f"record the verdict {verdict}")


def record_verdict(ctx: "RunContext", cluster: "Cluster", service: str, revision: "Revision | None",
                   version: str | None, verdict: Kind, why: str) -> None:
    """State a verdict in the record and, when the revision is known, on its ReplicaSet."""
    if not version:
        return
    ctx.verdict(service, version, verdict, why)
    if revision is not None and not cluster.dry_run:
        annotate_replica_set(cluster, revision.replica_set, verdict, why, ctx.run_id)
