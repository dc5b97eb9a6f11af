"""Sealing a record: refuse any record that holds a secret, then chain it into the ledger.

``scan_notebook`` reads every text a notebook holds (cell sources, every output and mime
type, tracebacks, metadata — papermill keeps the parameters there too) and reports each
registered secret value (by fingerprint, see ``redaction.FingerprintStore``), each common
token shape and each secret-named parameter given in clear, saying where: cell index,
output index, mime type. ``seal_record`` refuses on any finding; otherwise it exports the
HTML, scans that too, and appends both files' hashes to the ledger.

Works for any executed notebook, including one produced by plain ``papermill``: a record
outside the records root is first copied to its canonical place (env/date/name).
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import RunbookError
from .progress import settle_progress
from .redaction import MASK, FingerprintFinder, FingerprintStore, find_shapes, is_secret_name, redact, strip_ansi
from .ledger import record_path
from .summary import read_summary

__all__ = [
    "Finding",
    "SealRefused",
    "SealResult",
    "scan_notebook",
    "scan_text",
    "mask_injected_parameters",
    "seal_record",
]

_ASSIGNMENT = re.compile(r"^(?P<lead>\s*)(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>\s*=\s*)(?P<value>.+?)\s*$", re.M)
_MASKED_VALUES = {repr(MASK), f'"{MASK}"', "None", "''", '""'}


@dataclass(frozen=True)
class Finding:
    """One secret found in a record: what it looks like and where it is."""

    where: str
    what: str
    excerpt: str = ""
    cell: int | None = None
    output: int | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.what}" + (f" ({self.excerpt})" if self.excerpt else "")


class SealRefused(RunbookError):
    """The record holds a secret (or changed after sealing): it is not sealed."""

    def __init__(self, record: Path, findings: list[Finding], reason: str = "holds secrets") -> None:
        self.record, self.findings = record, findings
        lines = "\n".join(f"  - {f}" for f in findings[:20])
        more = f"\n  ... and {len(findings) - 20} more" if len(findings) > 20 else ""
        super().__init__(f"refusing to seal {record}: it {reason}\n{lines}{more}")


@dataclass
class SealResult:
    record: Path
    html: Path | None
    entry: dict[str, Any] = field(default_factory=dict)
    already_sealed: bool = False


def _excerpt(text: str, offset: int, length: int) -> str:
    before = text[max(0, offset - 24) : offset]
    after = text[offset + length : offset + length + 24]
    return redact(f"{before}{MASK}{after}").replace("\n", "⏎")


def scan_text(text: str, where: str, finder: FingerprintFinder | None = None, *,
              cell: int | None = None, output: int | None = None) -> list[Finding]:
    """Registered values and token shapes in one text."""
    if not text:
        return []
    findings: list[Finding] = []
    seen: set[int] = set()
    for candidate in (text, strip_ansi(text)) if "\x1b[" in text else (text,):
        for offset, length in (finder.find(candidate) if finder else []):
            if offset not in seen:
                seen.add(offset)
                findings.append(Finding(where, "a registered secret value", _excerpt(candidate, offset, length), cell, output))
        for hit in find_shapes(candidate):
            if hit.offset not in seen:
                seen.add(hit.offset)
                findings.append(Finding(where, f"something shaped like a {hit.shape}", hit.excerpt, cell, output))
    return findings


def _texts(value: Any, path: str) -> list[tuple[str, str]]:
    """Every string inside a JSON-like value, with a readable path to it."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            if str(key).startswith("image/") and not str(key).startswith("image/svg"):
                continue  # base64 pixels
            found += _texts(str(key), path) + _texts(item, f"{path}.{key}" if path else str(key))
        return found
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in _texts(item, f"{path}[{i}]")]
    return []


def _clear_parameters(nb: Any) -> list[Finding]:
    """Secret-named parameters papermill wrote in clear (papermill #271)."""
    findings = []
    parameters = nb.metadata.get("papermill", {}).get("parameters", {}) or {}
    for name, value in parameters.items():
        if is_secret_name(name) and value not in (None, "", MASK):
            findings.append(Finding("notebook metadata papermill.parameters", f"parameter {name!r} in clear"))
    for index, cell in enumerate(nb.cells):
        if "injected-parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        for match in _ASSIGNMENT.finditer(cell.get("source", "")):
            if is_secret_name(match["name"]) and match["value"] not in _MASKED_VALUES:
                findings.append(Finding(f"cell {index} source (injected parameters)",
                                        f"parameter {match['name']!r} in clear", cell=index))
    return findings


def scan_notebook(nb: Any, finder: FingerprintFinder | None = None) -> list[Finding]:
    """Every secret in a notebook (an nbformat node, or a path), with where it is."""
    import nbformat

    if not hasattr(nb, "cells"):
        nb = nbformat.read(str(nb), as_version=4)
    finder = finder if finder is not None else FingerprintStore.default().finder()
    findings = _clear_parameters(nb)
    for path, text in _texts(dict(nb.metadata), ""):
        findings += scan_text(text, f"notebook metadata {path}".rstrip(), finder)
    for index, cell in enumerate(nb.cells):
        findings += scan_text(cell.get("source", ""), f"cell {index} source", finder, cell=index)
        for path, text in _texts(dict(cell.get("metadata", {})), ""):
            findings += scan_text(text, f"cell {index} metadata {path}", finder, cell=index)
        for out_index, output in enumerate(cell.get("outputs", [])):
            for path, text in _texts(dict(output), ""):
                what = path if path not in ("text", "") else f"{output.get('name', 'stream')}"
                findings += scan_text(text, f"cell {index} output {out_index} ({what})", finder,
                                      cell=index, output=out_index)
    return _deduplicate(findings)


def _deduplicate(findings: list[Finding]) -> list[Finding]:
    seen, unique = set(), []
    for f in findings:
        key = (f.where, f.what, f.excerpt)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def mask_injected_parameters(nb: Any, extra_names: set[str] | frozenset[str] = frozenset()) -> int:
    """Mask secret parameters in papermill's injected cell and metadata. Returns how many.

    Values of secret-named parameters (and of ``extra_names``) become ``********``; any
    registered value elsewhere in the injected cell is redacted too.
    """
    changed = 0
    meta = nb.metadata.get("papermill", {})
    for name, value in list((meta.get("parameters") or {}).items()):
        if (is_secret_name(name) or name in extra_names) and value not in (None, "", MASK):
            meta["parameters"][name] = MASK
            changed += 1
    for cell in nb.cells:
        if "injected-parameters" not in cell.get("metadata", {}).get("tags", []):
            continue

        def mask(match: re.Match[str]) -> str:
            nonlocal changed
            if (is_secret_name(match["name"]) or match["name"] in extra_names) and match["value"] not in _MASKED_VALUES:
                changed += 1
                return f"{match['lead']}{match['name']}{match['eq']}{MASK!r}"
            return match.group(0)

        source = _ASSIGNMENT.sub(mask, cell.get("source", ""))
        cell["source"] = redact(source)
    return changed


def _canonical_place(record: Path, root: Path) -> Path:
    """Where a record produced elsewhere (plain papermill) belongs under the records root."""
    summary = read_summary(record) or {}
    env = summary.get("env") if re.fullmatch(r"[a-z][a-z0-9-]*", str(summary.get("env") or "")) else "unknown"
    started = str(summary.get("started") or "")
    try:
        moment = datetime.fromisoformat(started.replace("Z", "+00:00"))
    except ValueError:
        moment = datetime.now(timezone.utc)
    runbook = re.sub(r"[^A-Za-z0-9_.-]", "-", str(summary.get("runbook") or record.stem))
    run_id = re.sub(r"[^A-Za-z0-9]", "", str(summary.get("run_id") or "")) or "norunid"
    return record_path(root, env, runbook, run_id, moment)


def seal_record(record: Path, root: Path | None = None, *, html: bool = True,
                mask_parameters: bool = False) -> SealResult:
    """Scan, export and chain one record. Raises SealRefused (nothing written) on a finding."""
    import nbformat

    from .export import export_html
    from .ledger import Ledger, records_root

    root = Path(root) if root is not None else records_root()
    record = Path(record).resolve()
    if not record.is_file():
        raise RunbookError(f"no such record: {record}")
    ledger = Ledger(root)
    if not record.is_relative_to(root.resolve()) or ledger.entry_for(record) is None:
        # Not sealed yet (a notebook run by hand in JupyterLab, or by plain papermill): settle its
        # progress bars to their final state, as `runbook run` does, so the sealed record and its
        # HTML do not keep pages of redraws on an error-red background.
        nb = nbformat.read(str(record), as_version=4)
        changed = bool(mask_injected_parameters(nb)) if mask_parameters else False
        changed = bool(settle_progress(nb)) or changed
        if changed:
            nbformat.write(nb, str(record))
    findings = scan_notebook(record)
    if findings:
        raise SealRefused(record, findings)
    if not record.is_relative_to(root.resolve()):
        target = _canonical_place(record, root.resolve())
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and target.read_bytes() != record.read_bytes():
            raise RunbookError(f"{target} already exists with other content; not overwriting it")
        shutil.copyfile(record, target)
        record = target
    existing = ledger.entry_for(record)
    if existing is not None:
        if existing["sha256"] != ledger.sha256(record):
            raise SealRefused(record, [], reason="was sealed before and has changed since (see `runbook records verify`)")
        return SealResult(record, ledger.path_of(existing.get("html")), existing, already_sealed=True)
    html_path = None
    if html:
        html_path = export_html(record)
        html_findings = [Finding(f"HTML export {html_path.name}: {f.where}", f.what, f.excerpt)
                         for f in scan_text(html_path.read_text(), "text", FingerprintStore.default().finder())]
        if html_findings:
            html_path.unlink(missing_ok=True)
            raise SealRefused(record, html_findings, reason="renders secrets in its HTML export")
    attachments = _scanned_attachments(record)
    extra = {"attachments": {ledger.relative(p): ledger.sha256(p) for p in attachments}} if attachments else {}
    entry = ledger.append(record, html_path, **extra)
    return SealResult(record, html_path, entry)


def _scanned_attachments(record: Path) -> list[Path]:
    """The documents written next to the record (a post-mortem draft), refused if one holds a secret."""
    from .ledger import attachments_of

    attachments = attachments_of(record)
    finder = FingerprintStore.default().finder()
    findings = [Finding(f"attachment {p.name}: {f.where}", f.what, f.excerpt)
                for p in attachments for f in scan_text(p.read_text(errors="replace"), "text", finder)]
    if findings:
        raise SealRefused(record, findings, reason="has an attachment that holds secrets")
    return attachments
