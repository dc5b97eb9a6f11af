"""The registry, the masked type, token shapes and fingerprints, without a kernel."""
from __future__ import annotations

import html
import json
import pickle
import random
import secrets
from pathlib import Path

import nbformat
import pytest

from runbooks_lib.records import redaction
from runbooks_lib.records.redaction import FingerprintFinder, FingerprintStore, find_shapes, redact, register_secret
from runbooks_lib.records.seal import mask_injected_parameters, scan_notebook
from runbooks_lib.records.secret import SecretValue


@pytest.fixture(autouse=True)
def private_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RUNBOOKS_FINGERPRINTS", str(tmp_path / "fp"))
    redaction.forget_secrets()
    yield
    redaction.forget_secrets()


def test_secret_value_is_masked_everywhere_but_reveal() -> None:
    value = "s3cr3t-" + secrets.token_hex(8)
    secret = SecretValue(value, name="db_password")
    shown = [repr(secret), str(secret), f"{secret}", f"{secret:>20}", secret._repr_html_(), repr([secret]),
             json.dumps({"x": str(secret)})]
    assert all(value not in s for s in shown)
    assert secret.reveal() == value and secret == SecretValue(value, register=False)
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert redact(f"leaked: {value}") == "leaked: ********"  # registered on creation


def test_escaped_forms_and_coloured_text_are_masked() -> None:
    value = 'p"a\\ss<w>rd&' + secrets.token_hex(4)
    register_secret(value, persist=False)
    for form in (value, json.dumps(value), repr(value), html.escape(value)):
        assert value not in redact(form) and html.escape(value) not in redact(form)
    # a traceback line coloured in the middle of the value
    half = len(value) // 2
    coloured = f"\x1b[31m{value[:half]}\x1b[0m{value[half:]}"
    assert redact(coloured) == "********"


@pytest.mark.parametrize("text, shape", [
    ("token hvs.CAESIJ3xk2N0cmV0LXZhbHVlLWhlcmUtMTIz", "Vault service token"),
    ("VAULT_TOKEN=s.Ab12Cd34Ef56Gh78Ij90Kl12", "Vault legacy token"),
    ("key AKIAIOSFODNN7EXAMPLE", "AWS access key id"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS secret access key"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "JSON web token"),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "Stripe key"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "private key"),
    ("postgresql://veza:hunter2hunter@db.veza:5432/veza", "password in a URL"),
])
def test_token_shapes_are_found_and_masked(text: str, shape: str) -> None:
    assert shape in {hit.shape for hit in find_shapes(text)}
    masked = redact(text)
    assert "********" in masked and not find_shapes(masked)


def test_masked_dsn_keeps_user_and_host() -> None:
    assert redact("postgresql://veza:hunter2hunter@db:5432/x") == "postgresql://veza:********@db:5432/x"
    assert not find_shapes("postgresql://veza:********@db:5432/x")


def test_fingerprints_find_a_value_without_storing_it(tmp_path: Path) -> None:
    value = "Unshaped-" + secrets.token_hex(6)
    register_secret(value)
    stored = (tmp_path / "fp" / "fingerprints.jsonl").read_text()
    assert value not in stored and (tmp_path / "fp" / "salt").stat().st_mode & 0o077 == 0
    finder = FingerprintStore.default().finder()
    assert finder.find(f"abc {value} def") == [(4, len(value))]
    assert finder.find("nothing here") == []


def test_the_rolling_prefilter_finds_what_hashing_every_window_finds(tmp_path: Path) -> None:
    # Values with non-ASCII characters and of several lengths, planted in a long text that
    # has multi-byte characters before them: the prefilter's windows count characters too.
    values = ["ünï-" + secrets.token_hex(10), "€uro-" + secrets.token_urlsafe(30), "Plain-" + secrets.token_hex(4)]
    for value in values:
        register_secret(value)
    rng = random.Random(7)
    text = "".join(rng.choice("abcdefghij é€😀\n") for _ in range(50_000))
    for offset, value in zip((10, 25_000, 49_900), values):
        text = text[:offset] + value + text[offset + len(value):]
    fast = FingerprintStore.default().finder()
    every_window = FingerprintFinder(fast.salt, fast.by_length, prefilters={})  # no prefilter: hash every window
    found = fast.find(text)
    assert found == every_window.find(text)
    assert {(offset, length) for offset, length in found} >= {(10, len(values[0])), (25_000, len(values[1])), (49_900, len(values[2]))}


def test_fingerprints_written_before_prefilters_are_still_found(tmp_path: Path) -> None:
    value = "Old-" + secrets.token_hex(8)
    register_secret(value)
    path = tmp_path / "fp" / "fingerprints.jsonl"
    path.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "pf"}) + "\n"
                            for line in path.read_text().splitlines()))
    assert FingerprintStore.default().finder().find(f"x {value} y") == [(2, len(value))]


def test_scan_names_cell_and_output_and_masks_parameters() -> None:
    value = "Unshaped-" + secrets.token_hex(6)
    register_secret(value)
    nb = nbformat.v4.new_notebook()
    injected = nbformat.v4.new_code_cell(f'# Parameters\napi_token = "{value}"\nversion = "v1"\n')
    injected.metadata["tags"] = ["injected-parameters"]
    leaky = nbformat.v4.new_code_cell("print(x)")
    leaky.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ok\n"),
                     nbformat.v4.new_output("display_data", data={"text/html": f"<td>{value}</td>"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), injected, leaky]
    nb.metadata["papermill"] = {"parameters": {"api_token": value, "version": "v1"}}
    where = {(f.where, f.what) for f in scan_notebook(nb)}
    assert ("cell 2 output 1 (data.text/html)", "a registered secret value") in where
    assert ("cell 1 source (injected parameters)", "parameter 'api_token' in clear") in where
    assert ("notebook metadata papermill.parameters", "parameter 'api_token' in clear") in where

    assert mask_injected_parameters(nb) == 2
    assert nb.cells[1].source == "# Parameters\napi_token = '********'\nversion = \"v1\"\n"
    assert nb.metadata["papermill"]["parameters"] == {"api_token": "********", "version": "v1"}
    assert {f.where for f in scan_notebook(nb)} == {"cell 2 output 1 (data.text/html)"}


def test_a_registered_value_s_prefilter_is_the_rolling_hash_of_its_one_window() -> None:
    # Registration hashes each value in plain Python; the finder hashes every window with numpy:
    # the two must agree, non-ASCII, astral and lone surrogate characters included.
    from runbooks_lib.records.redaction import RollingWindows

    salt = secrets.token_bytes(32)
    rng = random.Random(11)
    for length in (1, 7, 40, 300):
        text = "".join(rng.choice("aZ9-é€😀\ud800") for _ in range(length))
        assert FingerprintStore._prefilter(salt, text) == int(RollingWindows(salt, text).prefilters(length)[0])
