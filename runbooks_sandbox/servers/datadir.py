"""Where the files of servers that run as another user live: outside the checkout, when we are root.

initdb refuses root, so as root the sandbox runs PostgreSQL as user ``postgres`` (``runuser``).
That user must traverse every folder above its data directory, its sockets and the WAL archive
it writes: a checkout in root's home (mode 0700 on Debian) would stop ``sandbox up`` there. So
as root, those files live in a folder of their own under ``/var/tmp/veza-sandbox`` (world
traversable, kept across reboots like any data), named after the state directory so that ``up``,
``down`` and a drill's commands find the same one from the state directory alone, even after the
supervisor was killed. ``sandbox down`` removes it. As any other user, the servers run as that
user and their files stay in the state directory, as before.

``VEZA_SANDBOX_SERVER_ROOT`` moves the parent folder (a machine whose /var/tmp is small).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

from .ports import ServerError

__all__ = ["server_data_dir", "remove_server_data_dir", "untraversable_parent", "SERVER_ROOT_VARIABLE"]

SERVER_ROOT_VARIABLE = "VEZA_SANDBOX_SERVER_ROOT"
_DEFAULT_ROOT = Path("/var/tmp/veza-sandbox")


def _root() -> Path:
    return Path(os.environ.get(SERVER_ROOT_VARIABLE) or _DEFAULT_ROOT)


def untraversable_parent(path: Path) -> Path | None:
    """The first existing folder above ``path`` that other users cannot traverse, if any."""
    for parent in reversed(Path(path).resolve().parents):
        if parent.exists() and not os.stat(parent).st_mode & stat.S_IXOTH:
            return parent
    return None


def server_data_dir(state_dir: Path, *, create: bool = False) -> Path:
    """The folder for files user ``postgres`` must reach, for the sandbox in ``state_dir``.

    The state directory itself unless we are root; as root, ``<root>/<name>-<hash>`` where the hash
    is of the state directory's resolved path (two checkouts never share one). ``create`` makes it
    (mode 0755) and checks that another user can reach it, naming the folder in the way if not."""
    state_dir = Path(state_dir).resolve()
    if os.geteuid() != 0:
        return state_dir
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    folder = _root() / f"{state_dir.name.lstrip('.') or 'sandbox'}-{digest}"
    if create:
        folder.mkdir(parents=True, exist_ok=True)
        for made in (folder.parent, folder):
            made.chmod(0o755)
        blocked = untraversable_parent(folder / "x")
        if blocked is not None:
            raise ServerError(
                f"the sandbox's server files go to {folder}, but other users cannot traverse {blocked} "
                f"(mode {oct(os.stat(blocked).st_mode & 0o777)}); set {SERVER_ROOT_VARIABLE} to a folder they can reach")
    return folder


def remove_server_data_dir(state_dir: Path) -> bool:
    """Remove the folder of ``server_data_dir`` when it is not the state directory; True if it was there."""
    folder = server_data_dir(state_dir)
    if folder == Path(state_dir).resolve() or not folder.is_dir():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True
