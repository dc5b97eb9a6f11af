"""A synthetic delivery history as records, for the delivery metrics' tests and bench.

Deploys (rolling, blue-green; succeeded, rolled back, failed before serving, refused, dry runs),
canary promotions (promoted, aborted), rollbacks linking the deploy they undo (succeeded, failed,
refused, blocked by a migration), hotfix deploys linking the deploy they fix, DR drills and other
runs, each a record with a summary as ``RunContext.summary()`` writes it. The result keeps the
summaries and the commit times, so a test can count by hand what the metrics must say.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

from .records import write_summary_record

__all__ = ["SyntheticHistory", "generate_history", "SERVICES"]

SERVICES = ("veza-backend-api", "veza-chat-server", "veza-stream-server", "veza-frontend")
KINDS = (("deploy", 50), ("canary_promotion", 15), ("rollback", 7), ("dr_drill", 5), ("health_check", 18))


@dataclass
class SyntheticHistory:
    root: Path
    summaries: list[dict[str, Any]] = field(default_factory=list)  # in the order written (time order)
    paths: list[Path] = field(default_factory=list)
    commits: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def record_of(self, summary: Mapping[str, Any]) -> str:
        """The record path (relative to the root), as the catalog and links name it."""
        return self.paths[self.summaries.index(summary)].relative_to(self.root).as_posix()  # type: ignore[arg-type]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# The sequential verdict's looks (cumulative requests, errors, p99): no random draw, so the rest
# of a generated history is what it was before records kept their judged windows.
_CLEAN_LOOKS = [[float(t), 10.0 * t, 0.0, 40.0] for t in range(1, 13)]  # passes at 12 s
_ERRORING_LOOKS = [[float(t), 10.0 * t, 0.8 * t, 40.0] for t in range(1, 8)]  # 8 %: rejected at 7 s


def _judged(runbook: str, service: str, version: str, outcome: str, figures: Mapping[str, Any],
            params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The window a deploy's analysis or a canary judged: a pass for a release that served, a fail
    for one rolled back or aborted after serving; none for runs that judged nothing."""
    if params.get("dry_run") or outcome in ("refused",) or (outcome == "failed" and not figures.get("rolled_back")):
        return []
    if outcome == "aborted" and "time_to_abort_s" not in figures:
        return []
    passed = outcome in ("succeeded", "promoted")
    looks = _CLEAN_LOOKS if passed else _ERRORING_LOOKS
    return [{"kind": "canary" if runbook == "canary_promotion" else "deploy analysis", "service": service,
             "version": version, "verdict": "pass" if passed else "fail", "ended_by": "decision",
             "decided_after_s": looks[-1][0], "max_s": 30.0, "looks": looks}]


class _Writer:
    def __init__(self, root: Path, rng: random.Random, commits: Mapping[tuple[str, str], datetime] | None,
                 envs: tuple[str, ...], filler: int) -> None:
        self.history = SyntheticHistory(root)
        self.rng, self.envs, self.filler = rng, envs, filler
        self.catalog = dict(commits) if commits else None
        self.serving: dict[tuple[str, str], list[str]] = {}  # (env, service) → records of serving deploys

    def write(self, moment: datetime, runbook: str, env: str, service: str, outcome: str, *, duration_s: float,
              parameters: dict[str, Any] | None = None, figures: dict[str, Any] | None = None,
              links: list[dict[str, str]] | None = None, notes: dict[str, str] | None = None,
              judged: list[dict[str, Any]] | None = None) -> str:
        run_id = f"{len(self.history.summaries):012x}"
        summary = {
            "version": 1, "runbook": runbook, "env": env, "service": service, "run_id": run_id,
            "parameters": {"service": service, **(parameters or {})}, "operator": self.rng.choice(("alice", "bob")),
            "started": _iso(moment), "finished": _iso(moment + timedelta(seconds=duration_s)),
            "duration_s": duration_s, "outcome": outcome, "failed_step": "Rolling update and checks" if outcome == "failed" else None,
            "error": None, "steps": [{"name": "step", "outcome": "succeeded", "duration_s": duration_s}],
            "figures": figures or {}, "links": links or [], "verdicts": [], "notes": notes or {},
            "judged": judged or [],
        }
        path = write_summary_record(self.history.root, summary, self.filler)
        self.history.summaries.append(summary)
        self.history.paths.append(path)
        return path.relative_to(self.history.root).as_posix()

    def version(self, service: str, moment: datetime, number: int) -> str:
        if self.catalog is not None:
            choices = sorted(v for (s, v), committed in self.catalog.items() if s == service and committed <= moment)
            version = self.rng.choice(choices or sorted(v for (s, v) in self.catalog if s == service))
            self.history.commits[(service, version)] = self.catalog[(service, version)]
            return version
        version = f"v2.{number}.0"
        self.history.commits[(service, version)] = moment - timedelta(minutes=self.rng.uniform(5, 300))
        return version

    def deploy(self, moment: datetime, env: str, service: str, number: int, runbook: str) -> None:
        rng = self.rng
        version = self.version(service, moment, number)
        strategy = "canary" if runbook == "canary_promotion" else rng.choice(("rolling", "rolling", "blue-green"))
        params: dict[str, Any] = {"version": version}
        if runbook == "deploy":
            params["strategy"] = strategy
        figures: dict[str, Any] = {}
        links: list[dict[str, str]] = []
        roll = rng.random()
        if runbook == "canary_promotion":
            outcome = "promoted" if roll < 0.75 else "aborted"
            if outcome == "aborted" and rng.random() < 0.85:
                figures["time_to_abort_s"] = round(rng.uniform(8, 150), 1)
        elif roll < 0.04:
            outcome, params["dry_run"] = "succeeded", True
        elif roll < 0.07:
            outcome = "refused"
        elif roll < 0.19:
            outcome = "failed"
            figures.update(rolled_back=True, time_to_rollback_s=round(rng.uniform(15, 420), 1))
        elif roll < 0.24:
            outcome = "failed"  # e.g. a Secret missing: nothing rolled out
        else:
            outcome = "succeeded"
        if outcome in ("succeeded", "promoted") and not params.get("dry_run"):
            figures["time_to_healthy_s"] = round(rng.uniform(10, 240), 1)
            earlier = self.serving.get((env, service))
            if earlier and rng.random() < 0.05:
                links.append({"relation": "fixes", "record": earlier[-1]})
        record = self.write(moment, runbook, env, service, outcome, duration_s=round(rng.uniform(60, 600), 1),
                            parameters=params, figures=figures, links=links,
                            judged=_judged(runbook, service, version, outcome, figures, params))
        if outcome in ("succeeded", "promoted") and not params.get("dry_run"):
            self.serving.setdefault((env, service), []).append(record)

    def rollback(self, moment: datetime, env: str, service: str) -> None:
        rng = self.rng
        roll = rng.random()
        figures: dict[str, Any] = {}
        notes: dict[str, str] = {}
        if roll < 0.82:
            outcome = "succeeded"
            figures["time_to_rollback_s"] = round(rng.uniform(15, 400), 1)
        elif roll < 0.88:
            outcome = "failed"
        elif roll < 0.94:
            outcome = "refused"
        else:
            outcome = "failed"
            figures["blocked_by_migration"] = True
            notes["migration"] = "schema migration 0042 (contract) is applied: the previous version cannot run"
        earlier = self.serving.get((env, service))
        links = [{"relation": "undoes", "record": earlier[-1]}] if earlier and outcome != "refused" else []
        self.write(moment, "rollback", env, service, outcome, duration_s=round(rng.uniform(30, 500), 1),
                   figures=figures, links=links, notes=notes)

    def other(self, moment: datetime, runbook: str, env: str, service: str) -> None:
        rng = self.rng
        figures: dict[str, Any] = {}
        if runbook == "dr_drill":
            figures = {"rto_s": round(rng.uniform(40, 900), 1), "rpo_s": round(rng.uniform(0, 40), 1)}
        outcome = "succeeded" if rng.random() < 0.9 else "failed"
        self.write(moment, runbook, env, service, outcome, duration_s=round(rng.uniform(30, 900), 1), figures=figures)


def generate_history(root: Path, count: int, *, seed: int = 7, start: datetime | None = None,
                     spacing_minutes: float = 37, envs: tuple[str, ...] = ("sandbox", "staging", "production"),
                     commits: Mapping[tuple[str, str], datetime] | None = None, filler: int = 2) -> SyntheticHistory:
    """Write ``count`` records, one every ``spacing_minutes`` (± a little) from ``start``.

    With ``commits`` (an image catalog's (service, version) → commit time), deploys use those
    versions; without, each deploy gets a new version committed 5 min to 5 h before it.
    """
    rng = random.Random(seed)
    if start is None:
        latest = max(commits.values()) if commits else datetime(2026, 1, 1, tzinfo=timezone.utc)
        start = latest + timedelta(hours=1)
    writer = _Writer(root, rng, commits, envs, filler)
    kinds, weights = zip(*KINDS)
    for i in range(count):
        moment = start + timedelta(minutes=spacing_minutes * i + rng.uniform(0, spacing_minutes / 3))
        runbook, env, service = rng.choices(kinds, weights)[0], rng.choice(envs), rng.choice(SERVICES)
        if runbook in ("deploy", "canary_promotion"):
            writer.deploy(moment, env, service, i, runbook)
        elif runbook == "rollback":
            writer.rollback(moment, env, service)
        else:
            writer.other(moment, runbook, env, "veza-backend-api" if runbook == "dr_drill" else service)
    return writer.history
