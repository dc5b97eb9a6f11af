"""The catalog: every record's summary, as rows to filter or a pandas DataFrame.

Reading 10 000 notebooks with nbformat would take minutes; the catalog instead finds the
summary's mime key in the raw bytes and decodes only that JSON object, and keeps a cache
(``<root>/.catalog.json``) keyed by path, size and mtime, so a warm listing only stats the
files. A record whose summary cannot be found still appears, with outcome ``no summary``.
"""
from __future__ import annotations

import gc
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

from .summary import SUMMARY_MIME

__all__ = ["Catalog", "RecordFilter", "summaries", "parse_since"]

CACHE_NAME = ".catalog.json"
CACHE_VERSION = 4  # 2: rows carry verdicts and the cluster identity; 3: and notes; 4: and judged windows
_KEY = json.dumps(SUMMARY_MIME).encode()
_decoder = json.JSONDecoder()

# The columns every row has, in this order; figures become ``figure.<name>`` columns.
COLUMNS = ("run_id", "runbook", "env", "service", "outcome", "started", "finished", "duration_s",
           "operator", "failed_step", "error", "git_sha", "record", "sealed")


def _summary_from_bytes(raw: bytes) -> dict[str, Any] | None:
    """The last summary scrap in a notebook file, without parsing the whole notebook."""
    at = raw.rfind(_KEY)
    if at < 0:
        return None
    text = raw[at + len(_KEY):at + len(_KEY) + 1_000_000].decode("utf-8", "replace")
    start = text.find(":") + 1
    while start < len(text) and text[start] in " \t\r\n":
        start += 1
    try:
        value, _ = _decoder.raw_decode(text, start)
    except ValueError:
        return None
    if isinstance(value, str):  # nbformat may store a JSON mime bundle as a string
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _row(rel: str, summary: dict[str, Any] | None) -> dict[str, Any]:
    summary = summary or {}
    row = {name: summary.get(name) for name in COLUMNS}
    row["outcome"] = summary.get("outcome") or "no summary"
    row["record"] = rel
    row["service"] = summary.get("service")
    row["steps"] = len(summary.get("steps") or [])
    row["parameters"] = summary.get("parameters") or {}
    row["figures"] = summary.get("figures") or {}
    row["links"] = summary.get("links") or []
    row["verdicts"] = summary.get("verdicts") or []
    row["judged"] = summary.get("judged") or []  # windows verdicts judged (runbook judge replay)
    row["notes"] = summary.get("notes") or {}  # e.g. why a rollback was blocked (runbooks_lib.procedures.delivery)
    row["cluster_identity"] = (summary.get("cluster") or {}).get("identity")
    return row


def parse_since(since: str | None) -> datetime | None:
    """``7d``, ``12h``, ``30m`` ago, or an ISO date/time (UTC)."""
    if not since:
        return None
    if match := re.fullmatch(r"(\d+)([dhm])", since.strip()):
        amount, unit = int(match[1]), match[2]
        delta = {"d": timedelta(days=amount), "h": timedelta(hours=amount), "m": timedelta(minutes=amount)}[unit]
        return datetime.now(timezone.utc) - delta
    moment = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class RecordFilter:
    env: str | None = None
    runbook: str | None = None
    service: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    severity: str | None = None  # an incident's severity parameter (P0..P3)

    def accepts(self, row: dict[str, Any]) -> bool:
        for name in ("env", "runbook", "service", "outcome"):
            wanted = getattr(self, name)
            if wanted is not None and row.get(name) != wanted:
                return False
        if self.severity is not None and (row.get("parameters") or {}).get("severity") != self.severity:
            return False
        if self.since is not None:
            started = row.get("started")
            if not started:
                return False
            try:
                if datetime.fromisoformat(str(started).replace("Z", "+00:00")) < self.since:
                    return False
            except ValueError:
                return False
        return True


class Catalog:
    """The summaries of every record under one records root."""

    def __init__(self, root: Path | None = None) -> None:
        from .ledger import records_root

        self.root = Path(root) if root is not None else records_root()
        self.cache_path = self.root / CACHE_NAME
        self.last_stats: dict[str, int] = {}

    def _files(self) -> Iterable[tuple[str, os.stat_result]]:
        # Plain strings, not Paths: at 10 000 records pathlib's parsing is most of a warm pass.
        base = str(self.root)
        skip = len(base) + 1
        stack = [base]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.name.endswith(".ipynb"):
                    yield entry.path[skip:].replace(os.sep, "/"), entry.stat()

    def _load_cache(self) -> dict[str, Any]:
        try:
            cache = json.loads(self.cache_path.read_text())
        except (OSError, ValueError):
            return {}
        return cache.get("rows", {}) if cache.get("version") == CACHE_VERSION else {}

    def _save_cache(self, rows: dict[str, Any]) -> None:
        tmp = self.cache_path.with_name(f"{CACHE_NAME}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"version": CACHE_VERSION, "rows": rows}, separators=(",", ":")))
            os.replace(tmp, self.cache_path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only archive is listed, just not cached

    def rows(self, where: RecordFilter | None = None) -> list[dict[str, Any]]:
        """Every record's row (newest first), re-reading only files that changed."""
        from .ledger import Ledger

        # Tens of thousands of small dicts: the cyclic GC would otherwise rescan them repeatedly.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._rows(where, Ledger)
        finally:
            if collecting:
                gc.enable()

    def _rows(self, where: RecordFilter | None, ledger_type: Any) -> list[dict[str, Any]]:
        cached = self._load_cache()
        fresh: dict[str, Any] = {}
        read = 0
        for rel, stat in self._files():
            stamp = [stat.st_size, stat.st_mtime_ns]
            hit = cached.get(rel)
            if hit is not None and hit["stamp"] == stamp:
                fresh[rel] = hit
                continue
            with open(self.root / rel, "rb") as f:
                fresh[rel] = {"stamp": stamp, "row": _row(rel, _summary_from_bytes(f.read()))}
            read += 1
        if read or len(fresh) != len(cached):
            self._save_cache(fresh)
        self.last_stats = {"records": len(fresh), "read": read}
        sealed = ledger_type(self.root).sealed_paths()
        rows = []
        for rel, item in fresh.items():
            row = dict(item["row"], sealed=rel in sealed)
            if where is None or where.accepts(row):
                rows.append(row)
        rows.sort(key=lambda r: str(r.get("started") or ""), reverse=True)
        return rows

    def find(self, run_id: str) -> dict[str, Any] | None:
        """The row of a run id (or of a unique prefix of one)."""
        matches = [r for r in self.rows() if str(r.get("run_id") or "").startswith(run_id)]
        return matches[0] if len(matches) == 1 else None

    def dataframe(self, where: RecordFilter | None = None) -> Any:
        """A pandas DataFrame of the summaries; figures as ``figure.<name>`` columns."""
        import pandas as pd

        rows = self.rows(where)
        frame = pd.DataFrame(rows, columns=[*COLUMNS, "steps", "parameters", "figures", "links"])
        if rows:
            figures = pd.DataFrame([r["figures"] for r in rows]).add_prefix("figure.")
            frame = pd.concat([frame, figures], axis=1)
            for column in ("started", "finished"):
                frame[column] = pd.to_datetime(frame[column], utc=True, errors="coerce", format="ISO8601")
        return frame


def summaries(root: Path | None = None, **filters: Any) -> Any:
    """All summaries as a DataFrame: ``summaries(env="production", since="30d")``."""
    since = filters.pop("since", None)
    where = RecordFilter(since=parse_since(since) if isinstance(since, str) else since, **filters)
    return Catalog(root).dataframe(where)
