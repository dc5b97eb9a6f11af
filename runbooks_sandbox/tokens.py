"""The bearer tokens of the sandbox's own endpoints, made by ``runbook sandbox up``.

Any local process could reach the control endpoint (faults, load, entry point) and the webhook
sink; a web page in a browser on this machine could POST to them. So each ``up`` makes two
random tokens, written 0600 into the state directory (never into supervisor.json or
sandbox.json, which are 0644, nor onto a command line):

- ``control-token``: the control endpoint's and the sink's read side (``GET /notifications``),
  sent as ``Authorization: Bearer`` by the sandbox's own clients (``runbook sandbox
  fault|load|entry-point|notifications|status``) and by Prometheus for the Redis exporter
  (``credentials_file``);
- ``notify-token``: in the path of the sink's webhook URL (``NOTIFY_URL``, in the 0600 env
  file), as a Slack incoming webhook's token is in its URL: the runbooks' notifier posts to a
  URL and nothing else, so the URL is the secret. Whoever may post notices may not inject faults.

``down`` removes both.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from .servers.ports import ServerError

__all__ = ["CONTROL_TOKEN", "NOTIFY_TOKEN", "make_token", "make_tokens", "read_token", "token_path",
           "remove_tokens"]

CONTROL_TOKEN = "control-token"
NOTIFY_TOKEN = "notify-token"


def token_path(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / name


def make_token(state_dir: Path, name: str) -> None:
    """A new random token in ``state_dir/name``, written 0600 through a rename (a reader never
    sees half of one). The fault proxy's admin token is made so too."""
    path = token_path(state_dir, name)
    tmp = path.with_name(f".{name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32))
    os.replace(tmp, path)


def make_tokens(state_dir: Path) -> None:
    """Two new tokens (:func:`make_token`)."""
    for name in (CONTROL_TOKEN, NOTIFY_TOKEN):
        make_token(state_dir, name)


def read_token(state_dir: Path, name: str) -> str:
    """The token, or ServerError saying the sandbox was not started by `runbook sandbox up`."""
    try:
        token = token_path(state_dir, name).read_text().strip()
    except OSError:
        token = ""
    if not token:
        raise ServerError(f"no {name} in {state_dir}: the sandbox's endpoints take the token `runbook sandbox up` "
                          "makes there; start (or restart) the sandbox with it")
    return token


def remove_tokens(state_dir: Path) -> None:
    for name in (CONTROL_TOKEN, NOTIFY_TOKEN):
        token_path(state_dir, name).unlink(missing_ok=True)
