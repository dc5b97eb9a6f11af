"""`make lab`, tested in a real browser: JupyterLab serves the health check, headless Chromium
(Debian's `chromium`, driven by Playwright without any browser download) opens it, runs every
cell as an on-call engineer would (Run → Run All Cells), and the rendered page is checked: every
step ran, the tables and the signals plot are drawn, nothing is shown as an error stream (a
progress bar on stderr is a red box in JupyterLab). A screenshot is kept in test-artifacts/.

The notebook is a copy in a temporary folder: JupyterLab autosaves, and notebooks/ stays
without outputs.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from .conftest import REPO, Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(600)]

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _lab_settings(folder: Path) -> None:
    """User settings: render every cell (no windowing, so off-screen outputs are in the page) and
    no news prompt over the notebook."""
    for plugin, settings in (("@jupyterlab/notebook-extension/tracker", {"windowingMode": "none"}),
                             ("@jupyterlab/apputils-extension/notification", {"fetchNews": "false"})):
        path = folder / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))


@pytest.fixture
def lab(sandbox: Sandbox, tmp_path: Path) -> Iterator[str]:
    """JupyterLab as `make lab` starts it (the sandbox's environment), on a free port, with a token."""
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: `make bootstrap` installs Debian's chromium (scripts/bootstrap-system.sh)")
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / "health_check.ipynb", root)
    _lab_settings(tmp_path / "lab-settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**sandbox.environ(), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "IPYTHONDIR": str(tmp_path / "ipython"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings")}
    log = (tmp_path / "lab.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", "--allow-root", "--no-browser",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "lab.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "JupyterLab did not answer in 90 s"
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/lab/tree/health_check.ipynb?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_health_check_runs_in_jupyterlab_in_a_real_browser(lab: str, sandbox: Sandbox) -> None:
    from playwright.sync_api import sync_playwright

    from runbooks_lib.records.ledger import Ledger
    from runbooks_lib.records.summary import read_summary

    records_before = set(sandbox.records.rglob("health_check-*.ipynb"))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(lab)
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
            # The kernel starts by itself; on a slow machine JupyterLab may ask which one: accept Python 3.
            deadline = time.monotonic() + 90
            while "Idle" not in (page.text_content("#jp-main-statusbar") or ""):
                if page.query_selector(".jp-Dialog button.jp-mod-accept"):
                    page.click(".jp-Dialog button.jp-mod-accept")
                assert time.monotonic() < deadline, "the kernel never became idle"
                time.sleep(0.3)
            page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
            page.click("li.lm-Menu-item:has-text('Run All Cells')")
            page.wait_for_function(
                """() => { const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                           return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent)); }""",
                timeout=240_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-health_check.png"), full_page=True)
            text = page.inner_text(".jp-NotebookPanel")
            tables = page.query_selector_all(".jp-OutputArea-output table")
            plots = page.query_selector_all(".jp-OutputArea-output img")
            errors = [e.inner_text() for e in page.query_selector_all(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")]
            tracebacks = [e.inner_text() for e in page.query_selector_all(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")]
        finally:
            browser.close()
    for step in ("Check cluster identity", "Deployments and pods", "Golden signals", "Vault", "Verdict"):
        assert f"✓ {step}: succeeded" in text, step
    assert "health_check on sandbox: succeeded" in text
    assert len(tables) >= 4 and len(plots) >= 1  # workloads, events, signals, ... and the signals plot
    assert not tracebacks and not errors, (tracebacks + errors)[:3]
    # Run by hand, it leaves the same audit trail as headless: a sealed record in the ledger.
    [record] = set(sandbox.records.rglob("health_check-*.ipynb")) - records_before
    summary = read_summary(record)
    assert summary is not None and summary["outcome"] == "succeeded", summary
    assert Ledger(sandbox.records).entry_for(record) is not None and Ledger(sandbox.records).verify() == []
