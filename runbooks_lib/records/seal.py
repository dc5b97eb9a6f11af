"""Sealing a record: refuse any record that holds a secret, then chain it into the ledger.

``scan_notebook`` reads every text a notebook holds (cell sources, every output and mime
type, tracebacks, metadata — papermill keeps the parameters there too) and reports each
registered secret value (by fingerprint, see ``redaction.FingerprintStore``), each common
token shape and each secret-named parameter given in clear, saying where: cell index,
output index, mime type, line — and what kind of secret, never its value. ``seal_record``
refuses on any finding; otherwise it exports the HTML, scans that too, and appends the files'
hashes to the ledger.

Nothing enters the records folder before it has passed (``records.quarantine``): the record,
its export and its attachments are made and scanned in a private workspace and moved into
place only then; a refused record goes to the quarantine, which nothing that reads records
reads. Works for any executed notebook, including one produced by plain ``papermill``: a
record outside the records root is sealed into its canonical place (env/date/name), and
left where it was if refused.
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
from .quarantine import move_into_place, quarantine, workspace
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
    "seal_staged",
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
    line: int | None = None  # in the cell's source or the output's text, from 1

    def __str__(self) -> str:
        at = f" at line {self.line}" if self.line else ""
        return f"{self.where}: {self.what}{at}" + (f" ({self.excerpt})" if self.excerpt else "")


class SealRefused(RunbookError):
    """The record holds a secret (or changed after sealing): it is not sealed. ``quarantined`` is
    the folder it was moved to, when it was made for the records folder (records.quarantine)."""

    def __init__(self, record: Path, findings: list[Finding], reason: str = "holds secrets",
                 quarantined: Path | None = None) -> None:
        self.record, self.findings, self.reason, self.quarantined = record, findings, reason, quarantined
        lines = "\n".join(f"  - {f}" for f in findings[:20])
        more = f"\n  ... and {len(findings) - 20} more" if len(findings) > 20 else ""
        where = (f"\n  quarantined in {quarantined} (owner-only, outside the catalog): remove the secret from the "
                 "runbook's output and run it again; delete the quarantined copy once read") if quarantined else ""
        super().__init__(f"refusing to seal {record}: it {reason}\n{lines}{more}{where}")

    def quarantine_in(self, folder: Path) -> "SealRefused":
        """The same refusal, saying where the refused record now is."""
        return SealRefused(self.record, self.findings, self.reason, quarantined=folder)


@dataclass
class SealResult:
    record: Path
    html: Path | None
    entry: dict[str, Any] = field(default_factory=dict)
    already_sealed: bool = False


def _excerpt(text: str, offset: int, length: int, spans: list[tuple[int, int]]) -> str:
    """A few characters either side of a finding, with it and every other span found nearby
    masked: a neighbouring secret must not show through the context given to the reader."""
    low, high = max(0, offset - 24), min(len(text), offset + length + 24)
    pieces, at = [], low
    for start, size in sorted(s for s in spans if s[0] < high and s[0] + s[1] > low):
        start, end = max(start, at), min(start + size, high)
        if end <= at:
            continue
        pieces += [text[at:start], MASK]
        at = end
    pieces.append(text[at:high])
    return redact("".join(pieces)).replace("\n", "⏎")


def scan_text(text: str, where: str, finder: FingerprintFinder | None = None, *,
              cell: int | None = None, output: int | None = None) -> list[Finding]:
    """Registered values and token shapes in one text, each with its line."""
    if not text:
        return []
    findings: list[Finding] = []
    seen: set[int] = set()
    for candidate in (text, strip_ansi(text)) if "\x1b[" in text else (text,):
        hits = [(offset, length, "a registered secret value") for offset, length in (finder.find(candidate) if finder else [])]
        hits += [(hit.offset, hit.length, f"something shaped like a {hit.shape}") for hit in find_shapes(candidate)]
        spans = [(offset, length) for offset, length, _ in hits]
        for offset, length, what in hits:
            if offset not in seen:
                seen.add(offset)
                findings.append(Finding(where, what, _excerpt(candidate, offset, length, spans), cell, output,
                                        line=candidate.count("\n", 0, offset) + 1))
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


def _settle(staged: Path, mask_parameters: bool) -> None:
    """A record not sealed yet (a notebook run by hand in JupyterLab, or by plain papermill): its
    progress bars settled to their final state, as `runbook run` does, so the sealed record and its
    HTML do not keep pages of redraws on an error-red background; its injected parameters masked if asked."""
    import nbformat

    nb = nbformat.read(str(staged), as_version=4)
    changed = bool(mask_injected_parameters(nb)) if mask_parameters else False
    changed = bool(settle_progress(nb)) or changed
    if changed:
        nbformat.write(nb, str(staged))


def _already_sealed(ledger: Any, record: Path, staged: Path | None = None) -> SealResult | None:
    """The seal of ``record`` if the ledger has one (refused if the file changed since); None if not sealed."""
    existing = ledger.entry_for(record) if record.is_file() else None
    if existing is None:
        return None
    if existing["sha256"] != ledger.sha256(staged or record):
        raise SealRefused(record, [], reason="was sealed before and has changed since (see `runbook records verify`)")
    return SealResult(record, ledger.path_of(existing.get("html")), existing, already_sealed=True)


def seal_record(record: Path, root: Path | None = None, *, html: bool = True,
                mask_parameters: bool = False) -> SealResult:
    """Scan, export and chain one record. Raises SealRefused on a finding: nothing enters the records
    folder; a refused record that was already inside it is moved to the quarantine."""
    from .ledger import Ledger, records_root

    root = (Path(root) if root is not None else records_root()).resolve()
    record = Path(record).resolve()
    if not record.is_file():
        raise RunbookError(f"no such record: {record}")
    ledger = Ledger(root)
    inside = record.is_relative_to(root) and not record.relative_to(root).parts[0].startswith(".")
    if inside and (sealed := _already_sealed(ledger, record)) is not None:
        return sealed
    target = record if inside else _canonical_place(record, root)
    work = workspace(root, target.stem)
    staged = work / target.name
    shutil.copyfile(record, staged)
    staged.chmod(0o600)
    try:
        _settle(staged, mask_parameters)
        sealed = None if inside else _sealed_copy(ledger, staged, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if sealed is not None:
        shutil.rmtree(work, ignore_errors=True)
        return sealed
    # A file of the user's outside the records folder stays theirs if refused: no copy is kept.
    return _seal_in(staged, target, root, html=html, keep_refused=inside, originals=[record] if inside else [])


def _sealed_copy(ledger: Any, staged: Path, target: Path) -> SealResult | None:
    """A record sealed from outside the records folder before: its seal (the same content), else None."""
    if not target.exists():
        return None
    if target.read_bytes() != staged.read_bytes():
        raise RunbookError(f"{target} already exists with other content; not overwriting it")
    return _already_sealed(ledger, target, staged)


def seal_staged(staged: Path, target: Path, root: Path, *, html: bool = True) -> SealResult:
    """Seal a record written in a workspace (``records.quarantine.workspace``) as ``target``; a
    refused one goes to the quarantine. `runbook run`, a dead run's watcher and an interactive
    session make their records this way."""
    return _seal_in(Path(staged), Path(target), Path(root).resolve(), html=html, keep_refused=True, originals=[])


def _seal_in(staged: Path, target: Path, root: Path, *, html: bool, keep_refused: bool,
             originals: list[Path]) -> SealResult:
    """Scan the staged record, its export and its attachments; move them into place and chain them,
    or quarantine them all (with ``originals``, a refused record's copies inside the records folder)."""
    from .ledger import Ledger

    work = staged.parent
    # Documents the run wrote beside its record's place (a post-mortem draft) are scanned with it.
    attachments = _gather_attachments(target, work)
    try:
        findings = scan_notebook(staged)
        if findings:
            raise SealRefused(target, findings)
        html_path = _export_scanned(staged, target) if html else None
        _scan_attachments(target, attachments)
    except BaseException as e:
        refused = e if isinstance(e, SealRefused) else \
            SealRefused(target, [], reason=redact(f"could not be sealed: {type(e).__name__}: {e}"))
        if keep_refused or attachments:
            folder = quarantine(root, [*work.iterdir(), *originals], target.stem, str(refused))
            refused = refused.quarantine_in(folder)
        shutil.rmtree(work, ignore_errors=True)
        raise refused from None
    placed_html = move_into_place(html_path, target.with_suffix(".html"), root) if html_path else None
    placed = [move_into_place(a, target.with_name(a.name), root) for a in attachments]
    move_into_place(staged, target, root)
    shutil.rmtree(work, ignore_errors=True)
    ledger = Ledger(root)
    extra = {"attachments": {ledger.relative(p): ledger.sha256(p) for p in placed}} if placed else {}
    return SealResult(target, placed_html, ledger.append(target, placed_html, **extra))


def _gather_attachments(target: Path, work: Path) -> list[Path]:
    """Move the documents written next to ``target`` into the workspace, to be scanned there."""
    from .ledger import attachments_of

    moved = []
    for path in attachments_of(target):
        moved.append(Path(shutil.move(str(path), str(work / path.name))))
    return moved


def _export_scanned(staged: Path, target: Path) -> Path:
    """The staged record's HTML export, refused if it renders a secret."""
    from .export import export_html

    html_path = export_html(staged)
    html_findings = [Finding(f"HTML export {target.with_suffix('.html').name}: {f.where}", f.what, f.excerpt, line=f.line)
                     for f in scan_text(html_path.read_text(), "text", FingerprintStore.default().finder())]
    if html_findings:
        raise SealRefused(target, html_findings, reason="renders secrets in its HTML export")
    return html_path


def _scan_attachments(target: Path, attachments: list[Path]) -> None:
    """The documents written next to the record (a post-mortem draft), refused if one holds a secret."""
    finder = FingerprintStore.default().finder()
    findings = [Finding(f"attachment {p.name}: {f.where}", f.what, f.excerpt, line=f.line)
                for p in attachments for f in scan_text(p.read_text(errors="replace"), "text", finder)]
    if findings:
        raise SealRefused(target, findings, reason="has an attachment that holds secrets")
