"""``outputs/ledger.jsonl``: one hash-chained line per sealed record.

Each line holds the record's path (relative to the records root), the sha256 of the file
(and of its HTML export), when it was sealed, the previous line's hash and its own hash
(sha256 of the line's canonical JSON without ``hash``). ``verify`` recomputes everything and
names each problem: a record edited (its hash differs), deleted (gone), inserted (a record
the ledger does not know), two records swapped, a ledger line edited, removed or moved.

A chain alone proves order and integrity only relative to its last line, so (``records.trust``)
each line also carries ``mac``, an HMAC over its content (``prev`` included) with a key kept off
the ledger (Vault transit, else a 0600 key file outside the records folder), named by ``key_id``;
and each line names its ``writer`` (the machine). The head (last hash, count, time) is anchored off
the machine; ``check`` compares the chain with every anchor it can read and names a chain shorter
than its anchor (newest records dropped) or different from it (rewritten).

A crash while a line is written leaves half a line at the end: ``verify`` reports it and the next
seal sets it aside (``.quarantine/``, with a note), continues the chain from the last good line and
says so in its own line (``repaired``), which ``check`` reports.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .trust import Anchor, FileKey, Head, anchors as configured_anchors, keys_by_id, ledger_key, writer_id

__all__ = ["record_path", "Ledger", "Problem", "Report", "records_root", "attachments_of", "check_root", "GENESIS",
           "NOTICES"]

log = logging.getLogger("runbooks_lib")

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

    # edited | deleted | inserted | swapped | ledger-edited | ledger-line-missing | reordered | head |
    # forged | unkeyed | key-unknown | torn | dropped | rewritten; notices (NOTICES): repaired | unkeyed-legacy |
    # unchecked | anchor-unreadable
    kind: str
    record: str | None
    message: str

    def __str__(self) -> str:
        return self.message


# What ``check`` reports without calling the records tampered with.
NOTICES = frozenset({"repaired", "unkeyed-legacy", "unchecked", "anchor-unreadable"})


@dataclass
class Report:
    """What ``check`` found: problems (tampering, loss) and notices (facts a reader should know)."""

    problems: list[Problem] = field(default_factory=list)
    notices: list[Problem] = field(default_factory=list)

    def add(self, found: list[Problem]) -> None:
        for problem in found:
            (self.notices if problem.kind in NOTICES else self.problems).append(problem)


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _line_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def _mac_input(entry: dict[str, Any]) -> bytes:
    """What a line's MAC covers: all of it but its hash and MAC (its ``prev`` is the previous line's hash)."""
    return _canonical({k: v for k, v in entry.items() if k not in ("hash", "mac", "_line")})


def _verified(key: Any, entry: dict[str, Any]) -> bool | None:
    """Whether the line's MAC is the key's; None when the key's store (Vault) cannot be reached."""
    try:
        return bool(key.verify(_mac_input(entry), str(entry["mac"])))
    except Exception:  # noqa: BLE001 - an unreachable Vault is said as such, not as a forgery
        return None


def _split_torn(text: str) -> tuple[list[str], str | None]:
    """The ledger's lines, and its last line if half-written (a crash mid-write: not JSON)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if lines:
        try:
            json.loads(lines[-1])
        except ValueError:
            return lines[:-1], lines[-1]
    return lines, None


class Ledger:
    """The ledger of one records root."""

    def __init__(self, root: Path, path: Path | None = None, *, own: bool = True) -> None:
        self.root = Path(root).resolve()
        self.path = Path(path) if path is not None else self.root / LEDGER_NAME
        # This machine's own ledger: a line made with a key it does not know is a problem here;
        # in another writer's (an archive's), it may only be a key that stayed on its machine.
        self.own = own

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
        """The last whole line's hash (a half-written line after it is not part of the chain)."""
        entries = [e for e in self.entries() if "_raw" not in e]
        return str(entries[-1].get("hash", "")) if entries else GENESIS

    def _torn(self, entries: list[dict[str, Any]]) -> bool:
        """Whether the last line is half-written: not JSON, and no newline after it."""
        return bool(entries) and "_raw" in entries[-1] and not self.path.read_bytes().endswith(b"\n")

    def append(self, record: Path, html: Path | None = None, **extra: Any) -> dict[str, Any]:
        """Chain ``record`` (and its HTML export) into the ledger; returns the new line."""
        key = ledger_key()
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        os.fchmod(fd, 0o644)  # the team reads the ledger, whatever the umask; nobody else writes it
        with os.fdopen(fd, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # concurrent seals must not fork the chain
            try:
                previous, repaired = self._last_good_line(f, record)
                entry: dict[str, Any] = {
                    "seq": (previous.get("seq", 0) + 1) if previous else 1,
                    "record": self.relative(record),
                    "sha256": self.sha256(record),
                    "html": self.relative(html) if html else None,
                    "html_sha256": self.sha256(html) if html else None,
                    "sealed_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    **extra, **({"repaired": repaired} if repaired else {}),
                    "writer": writer_id(), "key_id": key.key_id,
                    "prev": previous["hash"] if previous else GENESIS,
                }
                entry["mac"], entry["key_id"] = self._mac(key, entry)
                entry["hash"] = _line_hash(entry)
                f.write(json.dumps(entry, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        self._anchor(entry)
        return entry

    def _last_good_line(self, f: Any, record: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The last whole line (the chain continues from it), and what was done with a half-written one
        after it: set aside in the quarantine, the file cut back to the last good line."""
        from .quarantine import quarantine_text

        f.seek(0)
        text = f.read()
        lines, torn = _split_torn(text)
        repaired = None
        if torn is not None:
            number = len(lines) + 1
            note = (f"line {number} of {self.path.name} was half-written (a crash while sealing?) and was set aside "
                    f"by the seal of {self.relative(record)}; the chain continues from line {len(lines)}.")
            folder = quarantine_text(self.root, f"{self.path.stem}-line{number}", torn, note)
            good = "".join(line + "\n" for line in lines)
            f.truncate(len(good.encode()))
            repaired = {"torn_line": number, "set_aside": self.relative(folder)}
            log.warning("%s", note)
        elif text and not text.endswith("\n"):
            f.write("\n")  # a whole line that lost only its newline
        return (json.loads(lines[-1]) if lines else None), repaired

    @staticmethod
    def _mac(key: Any, entry: dict[str, Any]) -> tuple[str, str]:
        """The line's MAC and the id of the key that made it. Vault unreachable: the file key makes it
        (the line says so), rather than a run's record go unsealed."""
        try:
            return key.mac(_mac_input(entry)), key.key_id
        except Exception as e:  # noqa: BLE001 - each key reaches its store its own way
            fallback = FileKey()
            log.warning("ledger line keyed with %s: %s failed (%s)", fallback.key_id, key.key_id, type(e).__name__)
            return fallback.mac(_mac_input({**entry, "key_id": fallback.key_id})), fallback.key_id

    def head_of(self, entry: dict[str, Any]) -> Head:
        return Head(writer=str(entry.get("writer") or writer_id()), seq=int(entry.get("seq") or 0),
                    hash=str(entry.get("hash")), sealed_at=str(entry.get("sealed_at") or ""))

    def _anchor(self, entry: dict[str, Any]) -> None:
        """Anchor the new head in every configured place; one unreachable never stops a seal."""
        for anchor in configured_anchors():
            try:
                anchor.write(self.head_of(entry))
            except Exception as e:  # noqa: BLE001 - the record is sealed; the next seal anchors again
                log.warning("ledger head NOT anchored in %s (%s); the next seal tries again", anchor.name,
                            type(e).__name__)

    def sealed_paths(self) -> set[str]:
        return {str(e["record"]) for e in self.entries() if "record" in e}

    def _records_on_disk(self) -> Iterator[str]:
        for path in self.root.rglob("*.ipynb"):
            rel = path.relative_to(self.root)
            if not any(part.startswith(".") for part in rel.parts):
                yield rel.as_posix()

    def verify(self, expect_head: str | None = None, anchors: list[Anchor] | None = None) -> list[Problem]:
        """Every problem with the chain and the records; an empty list means all is intact."""
        return self.check(expect_head, anchors).problems

    def check(self, expect_head: str | None = None, anchors: list[Anchor] | None = None,
              on_disk: bool = True) -> Report:
        """Problems and notices: the chain, its MACs, the records, and the head against ``anchors``
        (default: those configured, ``records.trust.use_anchors``)."""
        entries = self.entries()
        report = Report()
        report.add(self._check_torn(entries))
        report.add(self._check_chain(entries))
        report.add(self._check_macs(entries))
        report.add(self._check_files(entries))
        if on_disk:
            known = {str(e.get("record")) for e in entries}
            report.add([Problem("inserted", rel, f"{rel}: not in the ledger (inserted, or never sealed)")
                        for rel in sorted(set(self._records_on_disk()) - known)])
        whole = [e for e in entries if "_raw" not in e]
        if expect_head is not None and (whole[-1].get("hash") if whole else GENESIS) != expect_head:
            report.add([Problem("head", None, f"the ledger's last hash is not the expected {expect_head[:12]}…: "
                                              "lines were added, removed or the chain was rewritten")])
        report.add(self._check_anchors(whole, configured_anchors() if anchors is None else anchors))
        return report

    def _check_torn(self, entries: list[dict[str, Any]]) -> list[Problem]:
        """A half-written last line, and the repairs earlier seals made."""
        found = [Problem("repaired", e.get("record"),
                         f"ledger line {(e.get('repaired') or {}).get('torn_line')} was half-written (a crash while "
                         f"sealing) and set aside in {(e.get('repaired') or {}).get('set_aside')}; the chain went on "
                         f"from the line before it (line {e['_line']}, {e.get('record')}, says so)")
                 for e in entries if e.get("repaired")]
        if self._torn(entries):
            line = entries[-1]["_line"]
            found.append(Problem("torn", None, f"ledger line {line}: half-written (a crash while sealing); the chain is "
                                               f"verified up to line {line - 1}; the next seal sets it aside"))
        return found

    def _check_macs(self, entries: list[dict[str, Any]]) -> list[Problem]:
        """Each line's MAC, with the key it names: a line rewritten without the key does not match."""
        keys, found, keyed = keys_by_id(), [], False
        for entry in entries:
            if "_raw" in entry or _line_hash({k: v for k, v in entry.items() if k != "_line"}) != entry.get("hash"):
                continue  # already named as edited
            line, rel = entry["_line"], entry.get("record")
            if "mac" not in entry:
                kind = "unkeyed" if keyed else "unkeyed-legacy"
                found.append(Problem(kind, rel, f"ledger line {line} ({rel}): no MAC" + (
                    " after keyed lines: rewritten without the key" if keyed else " (sealed before ledgers were keyed)")))
                continue
            keyed = True
            key = keys.get(str(entry.get("key_id")))
            if key is None:
                kind = "key-unknown" if self.own else "unchecked"
                found.append(Problem(kind, rel, f"ledger line {line} ({rel}): made with key {entry.get('key_id')}, "
                                                "which this machine does not have: its MAC is not checked"))
            elif (verdict := _verified(key, entry)) is None:
                found.append(Problem("unchecked", rel, f"ledger line {line} ({rel}): {entry.get('key_id')} could not "
                                                       "be reached: its MAC is not checked"))
            elif not verdict:
                found.append(Problem("forged", rel, f"ledger line {line} ({rel}): its MAC does not match its content: "
                                                    "the line was rewritten (its hashes recomputed) without the key"))
        return found

    def _check_anchors(self, entries: list[dict[str, Any]], anchors: list[Anchor]) -> list[Problem]:
        """The chain against each anchored head: shorter (newest lines dropped) or different (rewritten)."""
        found: list[Problem] = []
        writer = str(entries[-1].get("writer")) if entries and entries[-1].get("writer") else writer_id()
        by_seq = {e.get("seq"): e for e in entries}
        last = max((int(e.get("seq") or 0) for e in entries), default=0)
        for anchor in anchors:
            try:
                head = anchor.read(writer)
            except Exception as e:  # noqa: BLE001 - an unreachable anchor is said, not fatal
                found.append(Problem("anchor-unreadable", None, f"{anchor.name}: could not be read ({type(e).__name__})"))
                continue
            if head is None:
                continue
            if head.seq > last:
                found.append(Problem("dropped", None, f"the chain of {writer} ends at line {last} but {anchor.name} saw "
                                                      f"{head.seq} (sealed {head.sealed_at}): the newest records were "
                                                      "dropped from the ledger"))
            elif (by_seq.get(head.seq) or {}).get("hash") != head.hash:
                found.append(Problem("rewritten", None, f"line {head.seq} of the chain of {writer} is not the one "
                                                        f"{anchor.name} anchored (sealed {head.sealed_at}): the chain "
                                                        "was rewritten"))
        return found

    def _check_chain(self, entries: list[dict[str, Any]]) -> list[Problem]:
        problems: list[Problem] = []
        if self._torn(entries):
            entries = entries[:-1]  # reported as torn (_check_torn), not as an edit
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


def ledgers_of(root: Path) -> list[Ledger]:
    """The ledgers of a records folder: its own ``ledger.jsonl``, and, in an archive (or a pulled
    copy of one), one per writer under ``ledgers/``."""
    root = Path(root).resolve()
    found = [Ledger(root, path, own=False) for path in sorted((root / "ledgers").glob("*.jsonl"))]
    if (root / LEDGER_NAME).is_file() or not found:
        found.insert(0, Ledger(root))
    return found


def check_root(root: Path, expect_head: str | None = None, anchors: list[Anchor] | None = None) -> Report:
    """Every ledger of ``root`` checked (each against the anchors, and a writer's against the head
    published beside it), and every record on disk accounted for by one of them."""
    from .trust import ArchiveAnchor

    report, known = Report(), set()
    ledgers = ledgers_of(root)
    for ledger in ledgers:
        here = list(configured_anchors() if anchors is None else anchors)
        if not ledger.own:
            here.append(ArchiveAnchor(str(ledger.root)))  # ledgers/<writer>.head.json, pulled along
        found = ledger.check(expect_head if ledger.own else None, here, on_disk=False)
        name = "" if len(ledgers) == 1 else f"{ledger.path.relative_to(ledger.root)}: "
        report.problems += [Problem(p.kind, p.record, name + p.message) for p in found.problems]
        report.notices += [Problem(p.kind, p.record, name + p.message) for p in found.notices]
        known |= {str(e.get("record")) for e in ledger.entries()}
    report.add([Problem("inserted", rel, f"{rel}: not in any ledger (inserted, or never sealed)")
                for rel in sorted(set(ledgers[0]._records_on_disk()) - known)])
    return report
