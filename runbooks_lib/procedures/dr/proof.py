"""A backup's proofs: the stamps of the drills that restored it and found it good.

A drill that restores a backup and passes every check appends a stamp to the backup's entry in
the store, ``<name>.proofs.jsonl`` beside its manifest: which run, when, how many checks passed,
how long the restore took, how many rows it held. Each stamp carries Vault's HMAC (the profile's
transit key, as the manifest's) of its fields *and of the manifest it proved* (the sha256 of the
manifest's signed bytes, which name the dump's and the wrapped key's sha256). So a stamp says
something only about the backup it was made for: an edited stamp, a stamp copied beside another
backup, or a backup whose manifest was edited after the stamp, all show as not proven, with why.
Stamps are only ever appended; whoever can write to the storage can delete them, which makes a
backup look *less* proven, never more.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...config.clock import parse_time, utcnow
from ...errors import CheckFailed, ParameterError
from .store import PROOF_SUFFIX

if TYPE_CHECKING:
    from .restore import Check
    from .store import BackupStore, ManifestSeal, Vouched

__all__ = ["PROOF_SUFFIX", "Stamp", "Proof", "stamp_backup", "read_stamps", "proofs", "manifest_digest"]

_STAMP_TAG = b"veza-backup-proof-v1\n"


def manifest_digest(manifest: "Vouched") -> str:
    """The sha256 of what the manifest's HMAC covers: a stamp names the very manifest it proved."""
    return hashlib.sha256(manifest.signed_bytes()).hexdigest()


@dataclass(frozen=True)
class Stamp:
    """One drill's proof of one backup."""

    backup: str
    manifest_sha256: str  # of the proved manifest's signed bytes
    run_id: str
    runbook: str  # dr_drill
    scenario: str  # restore, full, pitr...
    proven_at: str  # ISO UTC, when the checks passed
    checks_passed: int
    checks: tuple[str, ...]
    restore_s: float | None
    rows: int | None
    authentication: str = ""  # Vault's HMAC of signed_bytes()

    def signed_bytes(self) -> bytes:
        fields = {k: v for k, v in asdict(self).items() if k != "authentication"}
        fields["checks"] = list(self.checks)
        return _STAMP_TAG + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @property
    def proven(self) -> datetime:
        moment = parse_time(self.proven_at)
        assert moment is not None, self.proven_at
        return moment

    def to_line(self) -> str:
        return json.dumps({**asdict(self), "checks": list(self.checks)}, sort_keys=True)

    @classmethod
    def from_line(cls, line: str) -> "Stamp":
        data = json.loads(line)
        known = set(cls.__dataclass_fields__)
        stamp = cls(**{k: v for k, v in data.items() if k in known})
        if parse_time(stamp.proven_at) is None:
            raise ValueError(f"proven_at {stamp.proven_at!r} is not a time")
        return replace(stamp, checks=tuple(stamp.checks))


@dataclass(frozen=True)
class Proof:
    """What a backup's stamps prove: the newest valid stamp (None: not proven) and why others are not."""

    backup: str
    stamp: Stamp | None
    invalid: tuple[str, ...] = ()

    @property
    def proven(self) -> bool:
        return self.stamp is not None

    def describe(self) -> str:
        """``proven at ... by run ...``, ``never restored``, or ``NOT PROVEN: ...``."""
        if self.stamp is not None:
            return (f"proven at {self.stamp.proven_at[:19]}Z by run {self.stamp.run_id} "
                    f"({self.stamp.scenario}, {self.stamp.checks_passed} checks)")
        if self.invalid:
            return "NOT PROVEN: stamp invalid (" + "; ".join(self.invalid) + ")"
        return "never restored"


def stamp_backup(store: "BackupStore", manifest: "Vouched", seal: "ManifestSeal", *, run_id: str, scenario: str,
                 checks: "list[Check]", restore_s: float | None, rows: int | None, runbook: str = "dr_drill",
                 dry_run: bool = False) -> Stamp:
    """Append a signed stamp to ``manifest``'s backup in ``store``: only for a restore whose every
    check passed (CheckFailed before anything is written otherwise). ``dry_run``: the stamp is
    made and returned, nothing is signed or written."""
    if not run_id.strip():
        raise ParameterError("a proof names the run that restored the backup: run_id is empty")
    if not checks or not all(c.passed for c in checks):
        failed = [c.name for c in checks if not c.passed]
        raise CheckFailed(f"backup {manifest.name} not stamped as proven: "
                          + (f"checks failed ({', '.join(failed)})" if failed else "no check was made"))
    stamp = Stamp(backup=manifest.name, manifest_sha256=manifest_digest(manifest), run_id=run_id, runbook=runbook,
                  scenario=scenario, proven_at=utcnow().isoformat(), checks_passed=len(checks),
                  checks=tuple(c.name for c in checks), restore_s=restore_s, rows=rows)
    if dry_run:
        return stamp
    stamp = replace(stamp, authentication=seal.sign(stamp.signed_bytes()))
    earlier = _stored_text(store, manifest.name)
    store.write_text(manifest.name, PROOF_SUFFIX, earlier + stamp.to_line() + "\n")
    return stamp


def _stored_text(store: "BackupStore", name: str) -> str:
    from ...errors import NotFound

    try:
        text = store.read_text(name, PROOF_SUFFIX)
    except NotFound:
        return ""
    return text if not text or text.endswith("\n") else text + "\n"


def read_stamps(store: "BackupStore", name: str) -> tuple[list[Stamp], list[str]]:
    """The stamps stored for backup ``name``, oldest first, and why any line could not be read."""
    stamps, unreadable = [], []
    for number, line in enumerate(_stored_text(store, name).splitlines(), 1):
        if not line.strip():
            continue
        try:
            stamps.append(Stamp.from_line(line))
        except (ValueError, TypeError) as e:
            unreadable.append(f"line {number} of {name}{PROOF_SUFFIX} unreadable ({type(e).__name__})")
    return stamps, unreadable


def proofs(store: "BackupStore", manifests: "list[Any]", seal: "ManifestSeal") -> dict[str, Proof]:
    """For each manifest (a :class:`Vouched`; authentic ones: the store's ``list()``), its proof.
    One verification call for every stamp of every backup."""
    read: dict[str, tuple[Any, list[Stamp], list[str]]] = {}
    for manifest in manifests:
        stamps, unreadable = read_stamps(store, manifest.name)
        read[manifest.name] = (manifest, stamps, unreadable)
    shaped = [(name, s) for name, (_, stamps, _) in read.items() for s in stamps if s.authentication.startswith("vault:v")]
    verdicts = iter(seal.verify([(s.signed_bytes(), s.authentication) for _, s in shaped]))
    authentic = {id(s) for (_, s) in shaped if next(verdicts)}
    result = {}
    for name, (manifest, stamps, unreadable) in read.items():
        valid, invalid = [], list(unreadable)
        for s in stamps:
            why = _invalid_because(s, manifest, id(s) in authentic)
            if why:
                invalid.append(f"run {s.run_id}: {why}")
            else:
                valid.append(s)
        newest = max(valid, key=lambda s: s.proven, default=None)
        result[name] = Proof(name, newest, tuple(invalid))
    return result


def _invalid_because(stamp: Stamp, manifest: "Vouched", authentic: bool) -> str:
    if not authentic:
        return "fails authentication with the transit key (edited or forged)"
    if stamp.backup != manifest.name:
        return f"made for backup {stamp.backup!r} (copied here)"
    if stamp.manifest_sha256 != manifest_digest(manifest):
        return "made for another version of this backup's manifest (the backup was edited after it was proven)"
    return ""
