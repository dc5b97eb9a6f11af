"""The summary scrap: what a record says about its run, in one machine-readable output.

A leaf of the records package: the kernel (``context``) writes a summary, the runner writes
one for a kernel that died, the seal, the export and the catalog read them. All of them
import from here and from nothing above it, so none of them imports another to learn a
mime type or a field name.

The scrap is a display output with mime type ``application/vnd.veza.runbook+json`` (no
scrapbook: it pulls pyarrow and costs a second per kernel); the last one in a notebook wins.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .redaction import MASK, is_secret_name, redact_object

__all__ = ["SUMMARY_MIME", "SUMMARY_VERSION", "Summary", "masked_parameters", "read_summary", "summary_bundle"]

SUMMARY_MIME = "application/vnd.veza.runbook+json"
SUMMARY_VERSION = 1


@dataclass
class Summary:
    """Every field of a summary scrap; ``as_dict()`` is what the record holds (JSON)."""

    runbook: str
    env: str
    run_id: str
    outcome: str = "running"
    service: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # masked: see masked_parameters
    operator: str | None = None
    identity: dict[str, Any] | None = None  # who ran it (Vault accessor, Kubernetes user), never a token
    record: str | None = None  # the record's path below the records root
    git_sha: str | None = None
    notebook_sha256: str | None = None
    cluster: dict[str, Any] | None = None
    started: str | None = None  # ISO 8601, UTC, milliseconds
    finished: str | None = None
    duration_s: float | None = None
    failed_step: str | None = None
    error: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, float | int | None] = field(default_factory=dict)
    links: list[dict[str, str]] = field(default_factory=list)
    # What the run learned about versions (service, version, verdict good/bad, why, at): deploys and
    # rollbacks read them back before choosing a target (runbooks_lib.procedures.judging.verdicts).
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # facts in words, e.g. an operator's override
    # Every window a verdict judged: kind, version, requests, errors, p99, how it ended and its looks
    # (runbooks_lib.procedures.judging.sequential), so `runbook judge replay` can re-judge it.
    judged: list[dict[str, Any]] = field(default_factory=list)
    written_by: str | None = None  # set when the runner, not the kernel, wrote it
    version: int = SUMMARY_VERSION

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["written_by"] is None:
            del data["written_by"]
        return data

    def headline(self) -> str:
        """One line for the text/plain form of the scrap (and the terminal)."""
        return (
            f"{self.runbook} on {self.env}: {self.outcome}"
            + (f" at step {self.failed_step!r}" if self.failed_step else "")
            + (f" in {self.duration_s:.1f} s" if self.duration_s is not None else "")
        )


def masked_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as a record may show them: secret-named ones masked, secrets redacted."""
    return {name: MASK if is_secret_name(name) and value not in (None, "") else redact_object(value)
            for name, value in params.items()}


def summary_bundle(summary: Summary) -> dict[str, Any]:
    """The display output's data: the scrap and its one-line text form."""
    return {SUMMARY_MIME: summary.as_dict(), "text/plain": summary.headline()}


def read_summary(record: Path | str) -> dict[str, Any] | None:
    """The last summary scrap in an executed notebook, or None."""
    import nbformat

    nb = nbformat.read(str(record), as_version=4)
    found = None
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if SUMMARY_MIME in data:
                found = data[SUMMARY_MIME]
    return json.loads(found) if isinstance(found, str) else found
