"""The sandbox's people in OpenBao: who they are is proven by a login, not by a typed name.

Three people log in with Vault's userpass method, each with a password made at ``sandbox up``
(kept in ``<state>/people.json``, mode 0600, never printed):

- alice, on call: reads and writes ``secret/veza/*``, uses the backups' transit key;
- bob, on call and an approver: the same, and may sign with the approvals' key;
- carol, a viewer: lists the secrets' keys, reads no value.

Anyone may verify an approval's signature (``transit/verify``); only an approver may make one
(``transit/sign/veza-approvals``, an ed25519 key that never leaves Vault). Each login gets the
person's identity entity, which is what four eyes compares: two tokens of one person are one person.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

__all__ = ["PEOPLE", "APPROVALS_KEY", "seed_people", "people_file", "read_passwords", "login"]

APPROVALS_KEY = "veza-approvals"

_ONCALL = """
path "secret/data/veza/*" { capabilities = ["create", "read", "update", "patch", "list"] }
path "secret/metadata/veza/*" { capabilities = ["read", "list"] }
path "transit/datakey/plaintext/veza" { capabilities = ["update"] }
path "transit/encrypt/veza" { capabilities = ["update"] }
path "transit/decrypt/veza" { capabilities = ["update"] }
path "transit/hmac/*" { capabilities = ["update"] }
"""
# Verifying reveals nothing: everyone may check an approval's signature and the HMACs that vouch
# for the backups' manifests and proofs (the health check's backup rows read them, for a viewer too).
_VERIFY = f"""
path "transit/verify/{APPROVALS_KEY}" {{ capabilities = ["update"] }}
path "transit/verify/veza" {{ capabilities = ["update"] }}
path "transit/verify/veza/*" {{ capabilities = ["update"] }}
"""
_APPROVER = f"""
path "transit/sign/{APPROVALS_KEY}" {{ capabilities = ["update"] }}
"""
_VIEWER = """
path "secret/metadata/veza/*" { capabilities = ["read", "list"] }
"""
POLICIES = {"veza-oncall": _ONCALL, "veza-approver": _APPROVER, "veza-viewer": _VIEWER, "veza-verify": _VERIFY}

#: Each person and the policies of their login.
PEOPLE: dict[str, tuple[str, ...]] = {
    "alice": ("veza-oncall", "veza-verify"),
    "bob": ("veza-oncall", "veza-approver", "veza-verify"),
    "carol": ("veza-viewer", "veza-verify"),
}


def people_file(state_dir: Path) -> Path:
    return Path(state_dir) / "people.json"


def seed_people(client: Any, state_dir: Path) -> dict[str, str]:
    """Enable userpass, write the policies, the approvals' signing key and the people (random
    passwords, saved 0600 in the state directory). Returns who was made with their policies."""
    if "userpass/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method(method_type="userpass", path="userpass")
    for name, rules in POLICIES.items():
        client.sys.create_or_update_policy(name=name, policy=rules)
    client.secrets.transit.create_key(name=APPROVALS_KEY, key_type="ed25519")
    passwords = {name: secrets.token_urlsafe(18) for name in PEOPLE}
    for name, policies in PEOPLE.items():
        client.auth.userpass.create_or_update_user(username=name, password=passwords[name],
                                                   policies=list(policies), mount_point="userpass")
    path = people_file(state_dir)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(passwords, out)
    os.replace(path.with_suffix(".tmp"), path)
    return {name: ", ".join(policies) for name, policies in PEOPLE.items()}


def read_passwords(state_dir: Path) -> dict[str, str]:
    try:
        return dict(json.loads(people_file(state_dir).read_text()))
    except (OSError, ValueError) as e:
        raise LookupError(f"no people in {state_dir} (a sandbox older than its people? `runbook sandbox down`, "
                          f"then `up`): {e}") from None


def login(address: str, state_dir: Path, name: str) -> Path:
    """Log ``name`` in and keep the token in ``<state>/tokens/<name>`` (0600); returns its path."""
    from runbooks_lib.platform.vault import login_userpass

    passwords = read_passwords(state_dir)
    if name not in passwords:
        raise LookupError(f"no one called {name!r} in the sandbox; its people: {', '.join(sorted(passwords))}")
    token = login_userpass(address, name, passwords[name])
    folder = Path(state_dir) / "tokens"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token.reveal())
    return path
