"""Rollback speed: the rollback runbook through `runbook run` vs bare kubectl, on one sandbox.

Starts its own sandbox, then per round: deploys v1.6.0 to veza-backend-api, times the rollback
runbook (wall time of `runbook run`, and its own time_to_rollback_s figure); deploys again and
times `kubectl rollout undo && kubectl rollout status`. Then a blue-green deploy of a bad
version for the flip-back time. Prints every figure, the ratio, and the failed requests the
load generator saw in each scenario. Goals (issue 6): rollback ≤ 15 s for 3 replicas, ratio
≤ 1.5, flip-back ≤ 5 s, 0 failed requests.

    .venv/bin/python bench/rollback.py [--rounds 2]
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
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVICE = "veza-backend-api"


class Bench:
    def __init__(self) -> None:
        self.state = Path(tempfile.mkdtemp(prefix="veza-bench-"))
        self.state.chmod(0o755)
        self.records = Path(tempfile.mkdtemp(prefix="veza-bench-records-"))
        self.env = {**os.environ, "RUNBOOKS_HOME": str(REPO), "RUNBOOKS_SANDBOX_ENV": str(self.state / "env"),
                    "RUNBOOKS_RECORDS_URL": str(self.records)}

    def runbook(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runbooks_lib.cli", *args], capture_output=True, text=True,
                              env=self.env, cwd=REPO, timeout=600)

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        kubeconfig = str(self.state / "kubeconfig")
        return subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "-n", "veza-sandbox", *args],
                              capture_output=True, text=True, timeout=300)

    def failed(self, since: datetime, service: str = SERVICE) -> int:
        out = self.runbook("sandbox", "traffic", "--json", "--state-dir", str(self.state),
                           "--since", since.isoformat().replace("+00:00", "Z"))
        return json.loads(out.stdout)[service]["failed"]

    def figures(self, result: subprocess.CompletedProcess[str]) -> dict:
        from runbooks_lib.runner import read_summary

        record = next(l[8:] for l in result.stdout.splitlines() if l.startswith("record: "))
        return read_summary(Path(record))["figures"]

    def set_image(self, version: str) -> None:
        self.kubectl("set", "image", f"deployment/{SERVICE}", f"{SERVICE}=registry.veza.app/{SERVICE}:{version}")
        self.kubectl("rollout", "status", f"deployment/{SERVICE}", "--timeout=120s")

    def blue_green_flip_back(self, service: str = "veza-chat-server") -> tuple[float | None, int]:
        """Blue-green deploy of a good version; once the Service flips, a fault makes the new pods
        answer 30 % errors: the runbook's monitor must flip back. Returns (flip_back_s, failed after)."""
        deploy = subprocess.Popen(
            [sys.executable, "-m", "runbooks_lib.cli", "run", "notebooks/deploy.ipynb", "--env", "sandbox",
             "-p", "service", service, "-p", "version", "v1.6.0", "-p", "strategy", "blue-green",
             "-p", "analysis_s", "5", "-p", "monitor_s", "8"],
            cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            while json.loads(self.kubectl("get", "service", service, "-o", "json").stdout)["spec"]["selector"].get("color") != "green":
                if deploy.poll() is not None:
                    return None, -1
                time.sleep(0.2)
            pods = self.kubectl("get", "pods", "-l", f"app={service},color=green", "-o", "name").stdout.split()
            for pod in pods:
                self.runbook("sandbox", "fault", pod.removeprefix("pod/"), "--error-rate", "0.3",
                             "--state-dir", str(self.state))
            out, _ = deploy.communicate(timeout=300)
        finally:
            if deploy.poll() is None:
                deploy.kill()
        after = datetime.now(timezone.utc)
        time.sleep(3)
        figures = self.figures(subprocess.CompletedProcess([], deploy.returncode, out, ""))
        return figures.get("flip_back_s"), self.failed(after, service)

    def close(self) -> None:
        self.runbook("sandbox", "down", "--state-dir", str(self.state))
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.rmtree(self.records, ignore_errors=True)


def main(rounds: int) -> None:
    bench = Bench()
    try:
        began = time.monotonic()
        up = bench.runbook("sandbox", "up", "--state-dir", str(bench.state))
        assert up.returncode == 0, up.stderr
        print(f"sandbox up: {time.monotonic() - began:.1f} s")
        runbook_times, runbook_ttr, kubectl_times = [], [], []
        for round_ in range(1, rounds + 1):
            bench.set_image("v1.6.0")
            since = datetime.now(timezone.utc)
            t0 = time.monotonic()
            result = bench.runbook("run", "notebooks/rollback.ipynb", "--env", "sandbox", "-p", "service", SERVICE)
            runbook_times.append(time.monotonic() - t0)
            assert result.returncode == 0, result.stdout + result.stderr
            runbook_ttr.append(bench.figures(result)["time_to_rollback_s"])
            print(f"round {round_}: runbook rollback {runbook_times[-1]:.1f} s wall "
                  f"(time_to_rollback_s {runbook_ttr[-1]:.1f}), failed requests {bench.failed(since)}")
            bench.set_image("v1.6.0")
            since = datetime.now(timezone.utc)
            t0 = time.monotonic()
            bench.kubectl("rollout", "undo", f"deployment/{SERVICE}")
            status = bench.kubectl("rollout", "status", f"deployment/{SERVICE}", "--timeout=120s")
            kubectl_times.append(time.monotonic() - t0)
            assert status.returncode == 0, status.stderr
            print(f"round {round_}: kubectl undo + status {kubectl_times[-1]:.1f} s, failed requests {bench.failed(since)}")
        best_runbook, best_kubectl = min(runbook_times), min(kubectl_times)
        print(f"rollback runbook (best of {rounds}): {best_runbook:.1f} s wall, time_to_rollback_s {min(runbook_ttr):.1f} s "
              f"(goal ≤ 15 s)")
        print(f"kubectl rollout undo && status (best of {rounds}): {best_kubectl:.1f} s")
        print(f"ratio runbook / kubectl: {best_runbook / best_kubectl:.2f} (goal ≤ 1.5); "
              f"time_to_rollback_s / kubectl: {min(runbook_ttr) / best_kubectl:.2f}")
        flip_back_s, failed_after = bench.blue_green_flip_back()
        print(f"blue-green flip-back: {flip_back_s} s (goal ≤ 5 s); failed requests in the 3 s after it: {failed_after}")
    finally:
        bench.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    main(parser.parse_args().rounds)
