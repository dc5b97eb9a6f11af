"""A game day: a list of runbook runs, each with the outcome it should have, and one table.

The scenarios live in ``parameters/gameday.yaml``. Each run is a ``runbook run`` command of its
own, exactly as an on-call engineer types it (one process and one kernel per run), so the game
day leaves the same records an on-call engineer would; the table at the end says, per run, whether it ended as expected and where its record is.

"As expected" is computed from what happened, never assumed: the run's outcome must be the
expected one *and* the platform must be healthy after it (every Deployment rolled out, and no
request failed in the seconds after the run), because a runbook that "succeeds" while leaving
users failing has made things worse.
"""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ...errors import ParameterError, RunbookError
from ...config.profiles import project_home

__all__ = ["Scenario", "ScenarioApproval", "ScenarioResult", "PlatformHealth", "platform_health", "load_scenarios", "run_gameday",
           "format_table", "failed_since"]


class ScenarioApproval(BaseModel):
    """A gated scenario's second half. Run by ``operator`` (a person of the sandbox's Vault, logged
    in) under a profile that requires approval, the run must stop awaiting approval; the operator's
    own approval must be refused (four eyes), whatever name it gives; ``approver`` approves with
    ``reason`` with their own login; the operator resumes the run. The scenario's outcome, figure
    and record are the resumed run's."""

    model_config = ConfigDict(extra="forbid")

    operator: str
    approver: str
    reason: str


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    notebook: str
    env: str | None = None  # another profile than the game day's (e.g. sandbox-gated)
    approval: ScenarioApproval | None = None
    parameters: dict[str, Any] = {}
    expect: str = "succeeded"
    figure: str | None = None
    healthy_after: bool = True  # the platform must be healthy once the run has ended
    # The version each named service must serve once the run has ended (its live Deployment's
    # image): where the outcome alone cannot tell a right mitigation from a wrong one.
    expect_versions: dict[str, str] = {}
    # Commands (argv lists, no shell) run first: what an on-call engineer or a fault did before
    # the runbook was opened, e.g. a bad release pushed with plain kubectl. They see the
    # profile's kubeconfig as KUBECONFIG; a failing one stops the game day.
    before: list[list[str]] = []
    # Commands run after the runbook, whatever its outcome: a clean-up of what ``before`` set up
    # (e.g. the DR region's sandbox of the region drill); a failing one stops the game day too.
    after: list[list[str]] = []


@dataclass(frozen=True)
class PlatformHealth:
    """Whether the platform is where it should be after a run, and why not."""

    healthy: bool
    detail: str


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    outcome: str
    figure: Any
    record: Path | None
    error: str | None
    health: PlatformHealth | None = None
    started: datetime | None = None
    ended: datetime | None = None

    @property
    def as_expected(self) -> bool:
        healthy = not self.scenario.healthy_after or (self.health is not None and self.health.healthy)
        return self.outcome == self.scenario.expect and healthy

    @property
    def platform_after(self) -> str:
        """The platform's health after the run, as the table and the page show it."""
        return "-" if self.health is None else ("healthy" if self.health.healthy else f"UNHEALTHY: {self.health.detail}")

    @property
    def expectation(self) -> str:
        """"yes", or why not: the wrong outcome, or the right one leaving the platform unhealthy."""
        if self.as_expected:
            return "yes"
        if self.outcome != self.scenario.expect:
            return f"NO (expected {self.scenario.expect})"
        return "NO (platform unhealthy after)"


def platform_health(env: str, settle_s: float = 3.0, expect_versions: dict[str, str] | None = None) -> PlatformHealth:
    """Every Deployment rolled out, each service of ``expect_versions`` serving its version, and no
    failed request seen by the load generator over ``settle_s``."""
    from ...platform.cluster import Cluster, deployment_state
    from ..incident.snapshot import image_tag
    from ...config.profiles import load_profile
    from ...platform.load_report import load_report

    profile = load_profile(env)
    since = datetime.now(timezone.utc)
    time.sleep(settle_s)
    problems = []
    try:
        cluster = Cluster(profile)
        for dep in cluster.deployments():
            state = deployment_state(dep)
            if not state.rolled_out:
                problems.append(f"{state.name}: {state.ready}/{state.desired} ready, {state.updated} updated")
        for service, version in (expect_versions or {}).items():
            serving = image_tag(cluster.deployment_state(cluster.live_deployment(service)).image)
            if serving != version:
                problems.append(f"{service} runs {serving}, expected {version}")
        report = load_report(profile.load_report_url, since) or {}
    except RunbookError as e:
        return PlatformHealth(False, f"cannot tell: {e}")
    requests = 0
    for service, entry in sorted(report.items()):
        requests += int(entry.get("requests", 0))
        if int(entry.get("failed", 0)):
            problems.append(f"{service}: {entry['failed']}/{entry['requests']} requests failed")
    if problems:
        return PlatformHealth(False, "; ".join(problems))
    return PlatformHealth(True, f"all rolled out, 0 failed of {requests} requests in {settle_s:g} s")


def run_before(env: str, command: list[str]) -> None:
    """Run one of a scenario's ``before`` (or ``after``) commands with the profile's cluster in KUBECONFIG."""
    import os
    import sys

    from ...config.profiles import load_profile

    profile = load_profile(env)
    environ = dict(os.environ)
    if profile.cluster.kubeconfig:
        environ["KUBECONFIG"] = str(profile.cluster.kubeconfig)
    # `runbook ...` is this project's command line, from this interpreter's environment; its
    # sandbox commands act on the sandbox the profile reads (RUNBOOKS_SANDBOX_ENV), if one is named.
    argv = [sys.executable, "-m", "runbooks_lib.cli", *command[1:]] if command[:1] == ["runbook"] else list(command)
    sandbox_env = os.environ.get("RUNBOOKS_SANDBOX_ENV")
    if command[:2] == ["runbook", "sandbox"] and sandbox_env and "--state-dir" not in command:
        argv += ["--state-dir", str(Path(sandbox_env).parent)]
    print(f"$ {' '.join(command)}", flush=True)
    # Relative paths (`--state-dir .sandbox-dr`) are the project's, wherever the game day was started.
    done = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=300, cwd=project_home())
    if done.stdout.strip():
        print(done.stdout.strip()[-2000:], flush=True)
    if done.returncode != 0:
        raise ParameterError(f"game day: `{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def failed_since(env: str, since: datetime) -> tuple[int, int]:
    """(failed, requests) over every service since ``since``, from the load generator."""
    from ...config.profiles import load_profile
    from ...platform.load_report import load_report

    report = load_report(load_profile(env).load_report_url, since) or {}
    return (sum(int(e.get("failed", 0)) for e in report.values()),
            sum(int(e.get("requests", 0)) for e in report.values()))


def load_scenarios(path: Path | None = None) -> list[Scenario]:
    path = path or project_home() / "parameters" / "gameday.yaml"
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return [Scenario.model_validate(s) for s in raw.get("scenarios", [])]
    except (OSError, yaml.YAMLError, ValidationError) as e:
        raise ParameterError(f"game day scenarios in {path}: {e}") from e


def _runbook(args: list[str], home: Path, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """``runbook ARGS`` as a command (with a person's Vault login, when given); its output shown as it ends."""
    import os
    import sys

    environ = {**os.environ, "VAULT_TOKEN": token} if token else None
    done = subprocess.run([sys.executable, "-m", "runbooks_lib.cli", *args], cwd=home, stdout=subprocess.PIPE,
                          stderr=None if args[0] in ("run", "resume") else subprocess.STDOUT, text=True, timeout=1800,
                          env=environ)
    print(done.stdout, end="", flush=True)
    return done


def _login(person: str, home: Path) -> str:
    """``runbook sandbox login PERSON``: the person's own Vault token (read from its 0600 file, never shown)."""
    import os
    import re

    argv = ["sandbox", "login", person]
    sandbox_env = os.environ.get("RUNBOOKS_SANDBOX_ENV")
    if sandbox_env:
        argv += ["--state-dir", str(Path(sandbox_env).parent)]
    print(f"$ runbook {' '.join(argv[:3])}", flush=True)
    done = _runbook(argv, home)
    found = re.search(r"token in (\S+) \(mode 0600\)", done.stdout)
    if done.returncode != 0 or found is None:
        raise ParameterError(f"game day: {person} could not log in to the sandbox's Vault (exit {done.returncode})")
    return Path(found.group(1)).read_text().strip()


def _summary_of(done: subprocess.CompletedProcess[str]) -> tuple[dict[str, Any], Path | None]:
    from ...records.summary import read_summary

    record = next((Path(line.removeprefix("record: ")) for line in done.stdout.splitlines()
                   if line.startswith("record: ")), None)
    summary = (read_summary(record) if record and record.is_file() else None) or {}
    if not summary:
        summary = {"outcome": "rejected" if done.returncode == 2 else "no summary",
                   "error": f"runbook exited {done.returncode} without a record"}
    return summary, record


def run_scenario(env: str, scenario: Scenario, home: Path) -> tuple[dict[str, Any], Path | None]:
    """``runbook run NOTEBOOK --env ENV -p ...`` as a command (then approve and resume, for a
    gated scenario); its summary and record."""
    argv = ["run", str(home / scenario.notebook), "--env", scenario.env or env]
    for name, value in scenario.parameters.items():
        argv += ["-p", name, str(value)]
    approval = scenario.approval
    if approval is None:
        return _summary_of(_runbook(argv, home))
    tokens = {person: _login(person, home) for person in (approval.operator, approval.approver)}
    summary, record = _summary_of(_runbook(argv, home, tokens[approval.operator]))
    return _approve_and_resume(approval, summary, record, home, tokens)


def _approve_and_resume(approval: ScenarioApproval, summary: dict[str, Any], record: Path | None,
                        home: Path, tokens: dict[str, str]) -> tuple[dict[str, Any], Path | None]:
    """The gate's second half, each step checked: a step that goes otherwise ends the scenario
    with an outcome saying so (never the expected one). Each person acts with their own Vault login."""
    if summary.get("outcome") != "awaiting approval":
        return {**summary, "outcome": f"not stopped at a gate ({summary.get('outcome')})"}, record
    run_id = str(summary["run_id"])
    mine, theirs = tokens[approval.operator], tokens[approval.approver]
    for name in (approval.operator, approval.approver):  # the operator's own login, whatever name it gives
        print(f"$ runbook approve {run_id} --as {name}   # with {approval.operator}'s own login", flush=True)
        own = _runbook(["approve", run_id, "--as", name, "--reason", approval.reason], home, mine)
        if own.returncode != 4:
            return {**summary, "outcome": f"self-approval as {name} not refused (exit {own.returncode})"}, record
    print(f"$ runbook approve {run_id} --reason ...   # with {approval.approver}'s own login", flush=True)
    given = _runbook(["approve", run_id, "--reason", approval.reason], home, theirs)
    if given.returncode != 0:
        return {**summary, "outcome": f"approval failed (exit {given.returncode})"}, record
    print(f"$ runbook resume {run_id}", flush=True)
    return _summary_of(_runbook(["resume", run_id], home, mine))


def run_gameday(env: str, scenarios: list[Scenario], home: Path | None = None) -> list[ScenarioResult]:
    home = home or project_home()
    results = []
    for index, scenario in enumerate(scenarios, 1):
        print(f"\n=== [{index}/{len(scenarios)}] {scenario.name}", flush=True)
        started = datetime.now(timezone.utc)
        try:
            for command in scenario.before:
                run_before(env, command)
            summary, record = run_scenario(env, scenario, home)
        finally:
            for command in scenario.after:
                run_before(env, command)
        figure = (summary.get("figures") or {}).get(scenario.figure) if scenario.figure else None
        health = platform_health(env, expect_versions=scenario.expect_versions) if scenario.healthy_after else None
        if health is not None:
            print(f"platform after: {'healthy' if health.healthy else 'NOT HEALTHY'} ({health.detail})", flush=True)
        results.append(ScenarioResult(scenario, summary.get("outcome", "no summary"), figure, record,
                                      summary.get("error"), health, started, datetime.now(timezone.utc)))
    return results


def format_table(results: list[ScenarioResult], home: Path | None = None) -> str:
    home = home or project_home()
    rows = [("scenario", "runbook", "outcome", "platform after", "expected", "key figure", "record")]
    for r in results:
        figure = f"{r.scenario.figure}={r.figure}" if r.scenario.figure else ""
        record = str(r.record.relative_to(home)) if r.record and r.record.is_relative_to(home) else str(r.record or "-")
        rows.append((r.scenario.name, Path(r.scenario.notebook).stem, r.outcome, r.platform_after, r.expectation,
                     figure, record))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
