"""What an approval approves: a digest of the exact change, part by part.

At a gate the run computes a digest over everything that decides what will happen: the notebook's
content, the validated parameters, the profile, the cluster's identity, and what will change (the
API server's dry-run diff, with every database migration that will run, up or down). The approver
signs that digest (``run.approvals``); a resumed run computes it again before it goes through the
gate, and any part that differs (the notebook edited, a parameter changed in the journal, another
cluster, a cluster that moved) stops it, naming the part. Nothing secret is in a part: the profile
is hashed with its secrets masked, and the diff shows Secret keys, never values.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["ChangeDigest", "change_digest", "PARTS"]

#: Each part of a change, as a person reads it in a refusal.
PARTS = {
    "notebook": "the notebook's content",
    "parameters": "the parameters",
    "profile": "the profile (its secrets masked)",
    "cluster": "the cluster's identity",
    "changes": "what will change (the dry-run diff and the migrations that will run)",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class ChangeDigest:
    """The sha256 of each part, and of all of them together (what the approver signs)."""

    parts: dict[str, str]

    @property
    def digest(self) -> str:
        return _sha(_canonical(self.parts))

    def differences(self, approved: Mapping[str, str]) -> list[str]:
        """The parts that are not what was approved, in words."""
        return [PARTS.get(name, name) for name in PARTS if approved.get(name) != self.parts.get(name)]

    def as_entry(self) -> dict[str, Any]:
        return {"digest": self.digest, "parts": dict(self.parts)}


def change_digest(ctx: Any, what_changes: str) -> ChangeDigest:
    """The digest of the change run ``ctx`` is about to make, ``what_changes`` being what its gate shows.

    The run's own id is taken out of what will change (a Deployment's change-cause names the run
    that made it): a resume makes the same change under its own id."""
    notebook = ctx._facts.get("notebook")
    # The notebook as the runner read it to execute it (runbook run), else as it is on disk now.
    notebook_part = ctx._facts.get("notebook_sha256") or (
        _sha(Path(notebook).read_bytes()) if notebook and Path(notebook).is_file() else "unknown")
    profile = ctx.profile.model_dump(mode="json") if ctx.profile is not None else {}
    changes = what_changes.replace(ctx.run_id, "<this run>")
    replay = getattr(ctx, "replay", None)
    if replay is not None:
        changes = changes.replace(replay.run_id, "<this run>")
    return ChangeDigest({
        "notebook": notebook_part,
        # As given (what the journal keeps and a resume runs with): a default a schema fills in at
        # each start (an incident's trigger time, "now") is the same change, not a new one.
        "parameters": _sha(_canonical(ctx._facts.get("parameters", ctx.params))),
        "profile": _sha(_canonical(profile)),
        "cluster": _sha(_canonical((ctx.cluster or {}).get("identity"))),
        "changes": _sha(changes.encode()),
    })
