"""Finding 9 (endpoints): the sandbox's control endpoint and webhook sink answer only their token holders.

Both listened on 127.0.0.1 for anyone: any local process could inject faults, move the entry
point or read the notices, and a web page could make a browser POST to them (JSON was taken
whatever the Content-Type). Now `runbook sandbox up` makes two tokens (0600 files in the state
directory): the control token (``Authorization: Bearer``) for the control endpoint and the sink's
read side, the notify token in the sink's webhook path (NOTIFY_URL), as a Slack webhook's. A body
that is not ``application/json`` is refused (415), a caller without the token too (401), and the
sandbox's own clients (``runbook sandbox load|notifications|entry-point``, Prometheus' Redis job,
the runbooks' notifier) still get through.

One supervisor (the sandbox's long-lived process, started as ``up`` starts it: inside the cluster's
network namespace, on the real control plane, its endpoints forwarded to the host's 127.0.0.1) for
the module; no database or Vault is needed for its endpoints. Skipped when the control plane is
not built or network namespaces are not permitted.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

from runbooks_lib.config.paths import project_home

REPO = project_home()
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what a page's <form> makes a browser send


@pytest.fixture(scope="module")
def box() -> Iterator[Any]:
    from runbooks_sandbox.controlplane import ControlPlaneNotBuilt, binaries
    from runbooks_sandbox.realstack import RealKubernetes
    from runbooks_sandbox.stack import Sandbox

    try:
        binaries()
    except ControlPlaneNotBuilt as e:
        pytest.skip(f"control plane not built: {e}")
    if os.geteuid() != 0:
        pytest.skip("the cluster network needs root (ip netns add)")
    state = Path(tempfile.mkdtemp(prefix="veza-endpoints-"))
    sandbox = Sandbox(state, home=REPO, load_rate=1.0)
    try:
        # What `sandbox up` starts first: the cluster and the supervisor inside it (host view recorded).
        status = RealKubernetes(sandbox).start_cluster({}, say=lambda _: None)
        sandbox._record(supervisor=status)
        sandbox.write_supervisor_status(status)
        sandbox.status_at_start = status
        yield sandbox
    finally:
        sandbox.down()
        shutil.rmtree(state, ignore_errors=True)


def _token(box: Any, name: str) -> str:
    return (box.state_dir / name).read_text().strip()


def _control(box: Any) -> str:
    return str(box.status_at_start["control_url"])


def _sink(box: Any) -> str:
    status = box.status_at_start
    return str(status.get("notify_base_url") or status["notify_url"].split("/hooks/")[0])


def test_the_tokens_are_private_files_never_in_the_status_files(box: Any) -> None:
    for name in ("control-token", "notify-token"):
        mode = stat.S_IMODE((box.state_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"
    control, notify = _token(box, "control-token"), _token(box, "notify-token")
    assert len(control) >= 32 and len(notify) >= 32 and control != notify
    for public in ("supervisor.json", "sandbox.json"):
        text = (box.state_dir / public).read_text()
        assert control not in text and notify not in text
    assert control not in " ".join(Path(f"/proc/{box.supervisor_pid()}/cmdline").read_text().split("\0"))


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/pids", None), ("GET", "/redis/metrics", None), ("POST", "/load", {"rate": 50}),
    ("POST", "/fault", {"namespace": "veza-sandbox", "pod": "x", "faults": {"crash_now": True}}),
    ("POST", "/entry-point", {"serving": False}),
])
def test_the_control_endpoint_refuses_a_caller_without_the_token(box: Any, method: str, path: str, body: Any) -> None:
    url = f"{_control(box)}{path}"
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, "the token without Bearer"):
        if isinstance(headers, str):
            headers = {"Authorization": _token(box, "control-token")}
        reply = requests.request(method, url, json=body, headers=headers, timeout=5)
        assert reply.status_code == 401, (headers, reply.status_code, reply.text)
        assert reply.headers.get("WWW-Authenticate", "").startswith("Bearer")
    # The notify token (NOTIFY_URL's, which runbooks hold) does not open it either.
    notify = {"Authorization": f"Bearer {_token(box, 'notify-token')}"}
    assert requests.request(method, url, json=body, headers=notify, timeout=5).status_code == 401


def test_a_browser_form_post_is_refused_before_anything_changes(box: Any) -> None:
    control = _control(box)
    for headers in (FORM, {"Content-Type": "text/plain"}, "a form, with the token"):
        if isinstance(headers, str):
            headers = {**FORM, "Authorization": f"Bearer {_token(box, 'control-token')}"}
        # JSON in a body a page can make a browser send, without asking: refused before it is read.
        reply = requests.post(f"{control}/entry-point", data=json.dumps({"serving": False}), headers=headers,
                              timeout=5)
        assert reply.status_code == 415, (headers, reply.status_code)
    hook = f"{_sink(box)}/hooks/{_token(box, 'notify-token')}/incidents"
    assert requests.post(hook, data="payload=%7B%22text%22%3A%22x%22%7D", headers=FORM, timeout=5).status_code == 415


def test_the_sandboxs_own_clients_carry_the_token(box: Any) -> None:
    env = {**os.environ, "RUNBOOKS_HOME": str(REPO)}

    def runbook(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "runbooks_lib.cli", "sandbox", *args, "--state-dir",
                               str(box.state_dir)], capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert runbook("load", "--rate", "2").startswith("load rates:")
    assert "entry point off" in runbook("entry-point", "--off")
    assert isinstance(json.loads(runbook("notifications", "--json")), list)
    assert box.pod_pids() == {}  # answered (no pod runs), not refused
    metrics = requests.get(f"{_control(box)}/redis/metrics", timeout=5,
                           headers={"Authorization": f"Bearer {_token(box, 'control-token')}"})
    assert metrics.status_code == 200 and "redis_up" in metrics.text  # as Prometheus scrapes it


def test_the_sink_takes_the_notifiers_posts_at_its_secret_url_only(box: Any) -> None:
    from runbooks_lib.platform.notify import Notice, WebhookNotifier

    base, notify = _sink(box), _token(box, "notify-token")
    for wrong in (f"{base}/hooks/incidents", f"{base}/hooks/{notify[:-1]}x/incidents", f"{base}/{notify}"):
        assert requests.post(wrong, json={"text": "forged"}, timeout=5).status_code == 401
    notice = Notice(severity="P3", summary="typo", status="declared", service="veza-frontend", env="sandbox")
    delivered = WebhookNotifier(f"{base}/hooks/{notify}/incidents").send(notice)
    assert delivered.delivered, delivered.error
    assert requests.get(f"{base}/notifications", timeout=5).status_code == 401
    assert requests.get(f"{base}/notifications", headers={"Authorization": f"Bearer {notify}"},
                        timeout=5).status_code == 401  # posting notices does not let one read them
    kept = box.notifications()
    assert [m["text"] for m in kept if "forged" in json.dumps(m)] == []
    assert kept[-1]["text"].startswith("[P3] sandbox/veza-frontend: typo")
    assert notify not in json.dumps(kept) and kept[-1]["path"] == "/hooks/incidents"


def test_prometheus_scrapes_the_redis_exporter_with_the_token_file(box: Any) -> None:
    from runbooks_sandbox.servers.prometheus import prometheus_config

    token_file = str(box.state_dir / "control-token")
    config = prometheus_config("http://127.0.0.1:1/sd", [], static_jobs={"redis": f"{_control(box)}/redis/metrics"},
                               static_jobs_token_file=token_file)
    redis = next(job for job in config["scrape_configs"] if job["job_name"] == "redis")
    assert redis["authorization"] == {"type": "Bearer", "credentials_file": token_file}
