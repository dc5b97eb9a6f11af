"""``outputs/ledger.jsonl``: one hash-chained line per sealed record.

Each line holds the record's path (relative to the records root), the sha256 of the file
(and of its HTML export), when it was sealed, the previous line's hash and its own hash
(sha256 of the line's canonical JSON without ``hash``). ``verify`` recomputes everything and
names each problem: a record edited (its hash differs), deleted (gone), inserted (a record
the ledger does not know), two records swapped, a ledger line edited, removed or moved.

A chain proves order and integrity only relative to its last line: someone who can rewrite
the whole ledger can rewrite the chain. ``head`` is that last hash; publish it elsewhere
(the run's notification, a commit) and pass it to ``verify(expect_head=...)``.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator


__all__ = ["record_path", "Ledger", "Problem", "records_root", "attachments_of", "GENESIS"]

GENESIS = "0" * 64
LEDGER_NAME = "ledger.jsonl"


def records_root(env: str | None = None) -> Path:
    """The records folder: ``RUNBOOKS_RECORDS_URL``, else the profile's ``records.url``, else outputs/."""
    from ..config.profiles import load_profile, project_home

    url = os.environ.get("RUNBOOKS_RECORDS_URL")
    if not url and env:
        url = load_profile(env).records.url
    url = url or "outputs"
    if url.startswith("file://"):
        url = url[len("file://"):]
    if "://" in url:
        # A remote archive: records are sealed in the local spool first, then published
        # (records/archive.py), so a run never needs the network to keep its record.
        url = "outputs"
    root = Path(url).expanduser()
    return root if root.is_absolute() else project_home() / root


def record_path(root: Path, env: str, runbook: str, run_id: str, started: datetime) -> Path:
    """Where a run's record lives below the records root: ``<env>/<date>/<runbook>-<time>Z-<run id>.ipynb``
    (``started`` in UTC), the one layout the runner, the seal and the catalog share."""
    return root / env / started.strftime("%Y-%m-%d") / f"{runbook}-{started.strftime('%H%M%SZ')}-{run_id}.ipynb"


def attachments_of(record: Path) -> list[Path]:
    """Documents a run wrote next to its record (``<record>-postmortem.md``, ``.html``): sealed,
    verified and published with it."""
    record = Path(record)
    stem = record.with_suffix("").name
    return sorted(p for p in record.parent.glob(f"{stem}-*") if p.suffix in (".md", ".html") and p.is_file())


@dataclass(frozen=True)
class Problem:
    """One thing ``verify`` found wrong, and the record or ledger line it concerns."""

    kind: str  # edited | deleted | inserted | swapped | ledger-edited | ledger-line-missing | reordered | head
    record: str | None
    message: str

    def __str__(self) -> str:
        return self.message


def _line_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Ledger:
    """The ledger of one records root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.path = self.root / LEDGER_NAME

    @staticmethod
    def sha256(path: Path) -> str:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    def path_of(self, relative: str | None) -> Path | None:
        return self.root / relative if relative else None

    def entries(self) -> list[dict[str, Any]]:
        """The ledger's lines as written (a line that is not JSON becomes a stub with ``_raw``)."""
        if not self.path.is_file():
            return []
        entries = []
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                entry["_line"] = number
            except ValueError:
                entry = {"_line": number, "_raw": line}
            entries.append(entry)
        return entries

    def entry_for(self, record: Path) -> dict[str, Any] | None:
        rel = self.relative(record)
        for entry in reversed(self.entries()):
            if entry.get("record") == rel:
                return entry
        return None

    @property
    def head(self) -> str:
        entries = self.entries()
        return str(entries[-1].get("hash", "")) if entries else GENESIS

    def append(self, record: Path, html: Path | None = None, **extra: Any) -> dict[str, Any]:
        """Chain ``record`` (and its HTML export) into the ledger; returns the new line."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        os.fchmod(fd, 0o644)  # the team reads the ledger, whatever the umask; nobody else writes it
        with os.fdopen(fd, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # concurrent seals must not fork the chain
            try:
                f.seek(0)
                lines = [line for line in f.read().splitlines() if line.strip()]
                previous = json.loads(lines[-1]) if lines else None
                entry: dict[str, Any] = {
                    "seq": (previous.get("seq", len(lines)) + 1) if previous else 1,
                    "record": self.relative(record),
                    "sha256": self.sha256(record),
                    "html": self.relative(html) if html else None,
                    "html_sha256": self.sha256(html) if html else None,
                    "sealed_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    **extra,
                    "prev": previous["hash"] if previous else GENESIS,
                }
                entry["hash"] = _line_hash(entry)
                f.write(json.dumps(entry, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return entry

    def sealed_paths(self) -> set[str]:
        return {str(e["record"]) for e in self.entries() if "record" in e}

    def _records_on_disk(self) -> Iterator[str]:
        for path in self.root.rglob("*.ipynb"):
            rel = path.relative_to(self.root)
            if not any(part.startswith(".") for part in rel.parts):
                yield rel.as_posix()

    def verify(self, expect_head: str | None = None) -> list[Problem]:
        """Every problem with the chain and the records; an empty list means all is intact."""
        entries = self.entries()
        problems = self._check_chain(entries)
        problems += self._check_files(entries)
        known = {str(e.get("record")) for e in entries}
        for rel in sorted(set(self._records_on_disk()) - known):
            problems.append(Problem("inserted", rel, f"{rel}: not in the ledger (inserted, or never sealed)"))
        if expect_head is not None and (entries[-1].get("hash") if entries else GENESIS) != expect_head:
            problems.append(Problem("head", None, f"the ledger's last hash is not the expected {expect_head[:12]}…: "
                                                  "lines were added, removed or the chain was rewritten"))
        return problems

    def _check_chain(self, entries: list[dict[str, Any]]) -> list[Problem]:
        problems: list[Problem] = []
        by_hash = {e.get("hash"): i for i, e in enumerate(entries)}
        for i, entry in enumerate(entries):
            line, rel = entry["_line"], entry.get("record")
            if "_raw" in entry:
                problems.append(Problem("ledger-edited", None, f"ledger line {line}: not valid JSON (edited)"))
                continue
            body = {k: v for k, v in entry.items() if k != "_line"}
            if _line_hash(body) != entry.get("hash"):
                problems.append(Problem("ledger-edited", rel, f"ledger line {line} ({rel}): edited (its hash does not match its content)"))
            expected_prev = entries[i - 1].get("hash") if i else GENESIS
            if entry.get("prev") == expected_prev:
                continue
            source = by_hash.get(entry.get("prev"))
            if source is not None:
                problems.append(Problem(
                    "reordered", rel,
                    f"ledger line {line} ({rel}): out of order, it was chained after {entries[source].get('record')} "
                    f"(now line {entries[source]['_line']})",
                ))
            elif i == 0 and entry.get("seq", 1) != 1 or i and entry.get("seq") != (entries[i - 1].get("seq") or 0) + 1:
                problems.append(Problem(
                    "ledger-line-missing", rel,
                    f"ledger line {line} ({rel}): the line chained before it is missing (removed from the ledger)",
                ))
            else:
                problems.append(Problem("ledger-edited", rel, f"ledger line {line} ({rel}): its link to the previous line was altered"))
        return problems

    def _check_files(self, entries: list[dict[str, Any]]) -> list[Problem]:
        problems: list[Problem] = []
        actual: dict[str, str | None] = {}
        for entry in entries:
            rel = entry.get("record")
            if not rel or "_raw" in entry:
                continue
            path = self.root / rel
            actual[rel] = self.sha256(path) if path.is_file() else None
        expected = {e.get("sha256"): e.get("record") for e in entries if e.get("record")}
        for entry in entries:
            rel = entry.get("record")
            if not rel or "_raw" in entry:
                continue
            found = actual.get(rel)
            if found is None:
                problems.append(Problem("deleted", rel, f"{rel}: deleted (sealed at {entry.get('sealed_at')})"))
            elif found != entry.get("sha256"):
                other = expected.get(found)
                if other and other != rel:
                    problems.append(Problem("swapped", rel, f"{rel}: holds the content sealed as {other} (records swapped or copied)"))
                else:
                    problems.append(Problem("edited", rel, f"{rel}: edited after sealing (sha256 differs)"))
            html = entry.get("html")
            if html:
                html_path = self.root / html
                if not html_path.is_file():
                    problems.append(Problem("deleted", html, f"{html}: HTML export deleted"))
                elif self.sha256(html_path) != entry.get("html_sha256"):
                    problems.append(Problem("edited", html, f"{html}: HTML export edited after sealing"))
            for attachment, digest in (entry.get("attachments") or {}).items():
                path = self.root / attachment
                if not path.is_file():
                    problems.append(Problem("deleted", attachment, f"{attachment}: attachment deleted"))
                elif self.sha256(path) != digest:
                    problems.append(Problem("edited", attachment, f"{attachment}: attachment edited after sealing"))
        return problems
