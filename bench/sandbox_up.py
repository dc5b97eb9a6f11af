"""How long `runbook sandbox up` takes to a healthy sandbox, and what the sandbox weighs at rest.

Runs the real command line in a temporary state directory, then sums the resident memory of
every process the sandbox started (the supervisor and its pods, OpenBao, Redis, PostgreSQL primary and
standby with their backends, Prometheus), then `runbook sandbox down` (timed too).

    .venv/bin/python bench/sandbox_up.py [--rounds N] [--rest-s S]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
RUNBOOK = [sys.executable, "-m", "runbooks_lib.cli", "sandbox"]


def runbook(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*RUNBOOK, *args], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "RUNBOOKS_HOME": str(REPO)}, timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"runbook sandbox {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def sandbox_processes(status: dict) -> dict[str, list[psutil.Process]]:
    """Each recorded component's process with all its descendants (pods, PostgreSQL backends)."""
    groups: dict[str, list[psutil.Process]] = {}
    for name, part in status["components"].items():
        try:
            root = psutil.Process(part["pid"])
            if name == "supervisor":  # the pods are its children: shown apart
                groups[name], groups["pods"] = [root], root.children(recursive=True)
            else:
                groups[name] = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, TypeError):
            groups[name] = []
    return groups


def cpu_seconds(groups: dict[str, list[psutil.Process]]) -> float:
    total = 0.0
    for processes in groups.values():
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
    return total


def rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def one_round(rest_s: float) -> dict[str, float]:
    state = Path(tempfile.mkdtemp(prefix="veza-bench-up-"))
    state.chmod(0o755)  # user postgres traverses it
    try:
        started = time.monotonic()
        runbook("up", "--state-dir", str(state))
        up_s = time.monotonic() - started
        status = json.loads(runbook("status", "--json", "--state-dir", str(state)).stdout)
        groups = sandbox_processes(status)
        cpu_before = cpu_seconds(groups)
        time.sleep(rest_s)
        cpu_pct = 100 * (cpu_seconds(groups) - cpu_before) / rest_s
        figures = {"up_to_healthy_s": up_s, "processes": sum(len(g) for g in groups.values()),
                   "cpu_at_rest_pct": cpu_pct}
        figures |= {f"rss_{name}_mb": rss_mb(procs) for name, procs in groups.items()}
        figures["rss_total_mb"] = sum(v for k, v in figures.items() if k.startswith("rss_"))
        started = time.monotonic()
        down = runbook("down", "--state-dir", str(state))
        figures["down_s"] = time.monotonic() - started
        if figures["down_s"] > 10:
            print(f"slow down:\n{down.stderr}")
        return figures
    finally:
        subprocess.run([*RUNBOOK, "down", "--state-dir", str(state)], capture_output=True, cwd=REPO)
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rest-s", type=float, default=5.0, help="seconds at rest before measuring memory")
    args = parser.parse_args()
    for n in range(1, args.rounds + 1):
        figures = one_round(args.rest_s)
        print(f"round {n}: up to healthy {figures['up_to_healthy_s']:.1f} s, down {figures['down_s']:.1f} s, "
              f"{figures['processes']:.0f} processes, RSS at rest {figures['rss_total_mb']:.0f} MB, "
              f"CPU at rest (with the load generator's traffic) {figures['cpu_at_rest_pct']:.0f} % of a core")
        for key, value in figures.items():
            if key.startswith("rss_") and key != "rss_total_mb":
                print(f"    {key.removeprefix('rss_').removesuffix('_mb'):<18} {value:7.1f} MB")


if __name__ == "__main__":
    main()
