"""Where a record is made before it is sealed, and where a refused one goes.

Nothing reaches the records folder before the seal has passed it. A record is written, masked,
exported and scanned in a private workspace, ``<root>/.staging/<record>-<random>/`` (0700, files
0600); only then are the record, its HTML export and its attachments moved into place (a rename:
the workspace is on the records folder's filesystem, so a reader never sees half a file) at 0644,
and chained into the ledger.

A record the seal refuses goes to ``<root>/.quarantine/<record>-<random>/`` instead (0700, files
0600), with ``REFUSED.txt`` saying which kind of secret was found where (never the value). Why
there, and not beside the records root (``<root>/../.quarantine``): the records root may be any
folder (``RUNBOOKS_RECORDS_URL``), whose parent may be shared or not ours to write; inside the root
the quarantine is on the same filesystem (moving a refused record there never copies a secret
across disks), and nothing that reads records looks at it: the catalog and ``records verify`` skip
every dot folder (as they skip ``.fingerprints``), and publishing copies only what the ledger
names. A person who must look at a refused run finds it next to the records, readable by the
records' owner alone, and deletes it when done.

Modes are set explicitly (``chmod`` after writing), not left to the umask: a umask of 000 must not
make a refused record world-readable, nor a 077 one hide the team's records from the team.
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Iterable

__all__ = ["STAGING", "QUARANTINE", "RECORD_MODE", "PRIVATE_MODE", "private_folder", "workspace", "quarantine",
           "quarantine_text", "move_into_place", "write_private"]

STAGING = ".staging"
QUARANTINE = ".quarantine"
RECORD_MODE = 0o644  # a sealed record: the team reads it
PRIVATE_MODE = 0o600  # anything not (yet) sealed: its owner only
FOLDER_MODE = 0o755
PRIVATE_FOLDER_MODE = 0o700


def private_folder(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (created if need be, its mode set whatever the umask)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_FOLDER_MODE)
    return path


def _unique(parent: Path, name: str) -> Path:
    """A new private folder ``<name>-<random>`` under ``parent`` (two seals of one name never share it)."""
    private_folder(parent)
    while True:
        folder = parent / f"{name}-{secrets.token_hex(4)}"
        try:
            folder.mkdir(mode=PRIVATE_FOLDER_MODE)
        except FileExistsError:
            continue
        os.chmod(folder, PRIVATE_FOLDER_MODE)
        return folder


def workspace(root: Path, name: str) -> Path:
    """A fresh private folder under ``<root>/.staging`` where one record is made and scanned."""
    return _unique(Path(root) / STAGING, name)


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable by its owner alone (created 0600, never wider in between)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), PRIVATE_MODE)
        f.write(text)
    return path


def quarantine(root: Path, files: Iterable[Path], name: str, note: str) -> Path:
    """Move ``files`` (a refused record and whatever was made with it) to a new folder under
    ``<root>/.quarantine`` (0700, files 0600) with ``REFUSED.txt`` holding ``note``; returns the folder."""
    folder = _unique(Path(root) / QUARANTINE, name)
    for file in files:
        file = Path(file)
        if not file.is_file():
            continue
        target = folder / file.name
        shutil.move(str(file), str(target))  # a rename on the same filesystem
        os.chmod(target, PRIVATE_MODE)
    write_private(folder / "REFUSED.txt", note.rstrip("\n") + "\n")
    return folder


def quarantine_text(root: Path, name: str, text: str, note: str) -> Path:
    """Set ``text`` aside (a half-written ledger line) in a new quarantine folder with ``note``."""
    folder = _unique(Path(root) / QUARANTINE, name)
    write_private(folder / f"{name}.txt", text)
    write_private(folder / "NOTE.txt", note.rstrip("\n") + "\n")
    return folder


def _public_parents(path: Path, root: Path) -> None:
    """Create the folders between ``root`` and ``path`` as the team's (0755, whatever the umask)."""
    missing = []
    folder = path.parent
    while folder != root and not folder.exists():
        missing.append(folder)
        folder = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        os.chmod(folder, FOLDER_MODE)


def move_into_place(staged: Path, target: Path, root: Path) -> Path:
    """Move a sealed file from the workspace to its place in the records folder, 0644."""
    _public_parents(target, Path(root))
    os.chmod(staged, RECORD_MODE)
    os.replace(staged, target)
    return target
