"""#25.5: a secret is masked in the forms it is printed in, whichever way it was registered.

The forms: as is, URL-encoded, base64 (of the value, and of ``user:value``), libpq's conninfo
``password=...``, and for a DSN its password alone. The entry points: a secret-named ``-p``
parameter, a webhook URL given as ``-p notify``, a value read as a ``SecretValue`` (as from
Vault), and a ``SecretStr`` of the profile (a DSN), which nobody but ``start()`` registers. Then
the runner process's own output: ``runbook run`` prints what it knows, masked.
"""
from __future__ import annotations

import base64
import os
import string
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbooks_lib.records import redaction
from runbooks_lib.records.redaction import redact, register_secret
from runbooks_lib.records.secret import SecretValue

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "records" / "secret_forms.ipynb"


def conninfo_password(value: str) -> str:
    """``password=...`` as libpq's conninfo writes it (psycopg.conninfo.make_conninfo)."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(password=value)


def forms(value: str, user: str = "veza") -> list[str]:
    """Every form of ``value`` that must never appear."""
    raw = value.encode()
    encoded = [base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]
    return [value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), *encoded,
            *(e.rstrip("=") for e in encoded), base64.b64encode(f"{user}:{value}".encode()).decode(),
            base64.b64encode(f"alice:{value}".encode()).decode(), conninfo_password(value)]


def dsn_with(password: str) -> str:
    return f"postgresql://veza:{urllib.parse.quote(password, safe='')}@127.0.0.1:5432/veza"


# -- in this process: every entry point, every form (fast, many examples) ------------------------------

secret_text = st.text(min_size=8, max_size=40).filter(lambda v: "*" not in v and v.strip() == v and v.isprintable())


@pytest.fixture(autouse=True)
def private_registry(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RUNBOOKS_FINGERPRINTS", str(tmp_path_factory.mktemp("fp")))
    redaction.forget_secrets()
    yield
    redaction.forget_secrets()


def _registered_through(entry: str, value: str) -> list[str]:
    """Register ``value`` as ``entry`` would; the values whose forms must now be masked."""
    from pydantic import BaseModel, SecretStr

    redaction.forget_secrets()
    if entry == "register_secret":
        register_secret(value, persist=False)
    elif entry == "SecretValue":
        SecretValue(value)
    elif entry == "dsn":  # the DSN is registered; its password alone must be masked too
        register_secret(dsn_with(value), persist=False)
    elif entry == "profile":
        from runbooks_lib.records.redaction import register_profile_secrets

        class Database(BaseModel):
            primary_dsn: SecretStr

        class Profile(BaseModel):
            database: Database
            notify: dict[str, SecretStr]

        register_profile_secrets(Profile(database=Database(primary_dsn=dsn_with(value)),
                                         notify={"webhook_url": f"https://hooks.example/services/{value}"}))
    return [value]


@settings(max_examples=120, deadline=None)
@given(value=secret_text, entry=st.sampled_from(["register_secret", "SecretValue", "dsn", "profile"]))
def test_every_form_of_a_registered_secret_is_masked(value: str, entry: str) -> None:
    for secret in _registered_through(entry, value):
        text = " | ".join(f"shown: {form}." for form in forms(secret))
        masked = redact(text)
        assert [form for form in forms(secret) if form in masked] == []


def test_a_webhook_url_given_as_notify_is_a_secret_parameter() -> None:
    from runbooks_lib.records.summary import masked_parameters

    url = "https://hooks.example/services/T000/B000/Xyz123secretpath"
    assert redaction.is_secret_name("notify")
    assert masked_parameters({"notify": url, "service": "api"}) == {"notify": "********", "service": "api"}


# -- a run: files under the records folder, and what `runbook run` prints ---------------------------------

def _environment(tmp_path: Path, dsn: str, vault_value: str) -> tuple[dict[str, str], Path]:
    from tests.test_records_failures import runner_environment

    env, records = runner_environment(tmp_path)
    sandbox_env = Path(env["RUNBOOKS_SANDBOX_ENV"])
    sandbox_env.write_text(sandbox_env.read_text() + f"PG_PRIMARY_DSN={dsn}\n")
    secret_file = tmp_path / "vault-value"
    secret_file.write_text(vault_value)
    env["SECRET_FORMS_FILE"] = str(secret_file)
    return env, records


def _files_holding(records: Path, unwanted: dict[str, str]) -> list[str]:
    found = []
    for path in records.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            found += [f"{path.relative_to(records)}: {label}" for label, form in unwanted.items() if form in text]
    return found


def _unwanted(**secrets: str) -> dict[str, str]:
    return {f"{name} form {i}": form for name, value in secrets.items() for i, form in enumerate(forms(value))}


token_text = st.text(alphabet=string.ascii_letters + string.digits + "-_.~!+/@:%$&", min_size=12, max_size=32)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(token=token_text, hook=token_text, vault_value=token_text, db_password=token_text)
def test_no_form_of_any_secret_reaches_a_file_of_the_records_folder_or_the_terminal(
        tmp_path_factory: pytest.TempPathFactory, token: str, hook: str, vault_value: str, db_password: str) -> None:
    token, vault_value, db_password = "t" + token, "v" + vault_value, "p" + db_password  # never a leading "-"
    notify = f"https://hooks.example/services/{urllib.parse.quote(hook, safe='')}"
    tmp_path = tmp_path_factory.mktemp("run")
    env, records = _environment(tmp_path, dsn_with(db_password), vault_value)
    result = subprocess.run([sys.executable, "-m", "runbooks_lib.cli", "run", str(FIXTURE), "--env", "sandbox",
                             "-p", "api_token", token, "-p", "notify", notify],
                            capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 1, result.stdout + result.stderr  # the notebook fails on purpose
    assert "Use the secrets" in result.stdout, result.stdout + result.stderr
    [record] = [p for p in records.rglob("*.ipynb") if ".quarantine" not in p.parts]  # sealed, not refused
    assert record.with_suffix(".html").is_file()
    unwanted = _unwanted(token=token, notify=notify, vault=vault_value, dsn_password=db_password,
                         dsn=dsn_with(db_password))
    assert _files_holding(records, unwanted) == []
    assert [label for label, form in unwanted.items() if form in result.stdout + result.stderr] == []
    assert "********" in record.read_text()


def test_what_the_runner_process_itself_prints_is_masked(tmp_path: Path) -> None:
    # `runbook run` knows the profile's secrets before anything runs: its own messages are masked
    # (here a refusal naming a notebook path that happens to hold the database password).
    password = "Pw-" + os.urandom(8).hex()
    env, _ = _environment(tmp_path, dsn_with(password), "unused-value")
    missing = tmp_path / password / "deploy.ipynb"
    result = subprocess.run([sys.executable, "-m", "runbooks_lib.cli", "run", str(missing), "--env", "sandbox"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and "no such notebook" in result.stderr, result.stderr
    assert password not in result.stdout + result.stderr and "********" in result.stderr
