"""Rollback speed as a person feels it: from pressing Enter to the previous version serving.

Starts its own sandbox, then per round, alternating on the same sandbox: deploys v1.6.0 to
veza-backend-api and runs `runbook run notebooks/rollback.ipynb`; deploys v1.6.0 again and runs
bare `kubectl rollout undo && kubectl rollout status`. While each command runs, a poller sends
requests to the Service's /version through its cluster IP, from the moment the command starts.

restore_from_command_s (DESIGN.md) = the first moment from which every sampled answer is the
previous version (a run of at least STABLE answers, none other after it) − the command's start.
Goals (issue 10): restore ratio runbook / kubectl ≤ 1.5, exit ratio ≤ 2. Also prints where the
runbook's time goes (kernel start, each step, finalize) from its record, the runbook's own
time_to_rollback_s, failed requests, and a blue-green flip-back.

    .venv/bin/python bench/rollback.py [--rounds 5] [--no-flip-back] [--verify-s 5] [--load-rate 100]

``--verify-s`` is the runbook's verify_s: the most seconds of the target's traffic judged before
it exits (issue 27: the sequential verdict ends as soon as its evidence suffices). The exit
cannot come before the undo, the first target pod's readiness and the verdict, so the exit ratio
is printed with the window it judged, how many of its verdicts the evidence decided (not the
window's end), the requests it judged, and how many an SPRT would need to rule out a 5 % error
rate (the record's "evidence" column), with the window that takes at the judged rate.

``--load-rate`` is the sandbox's load generator's rate per Service (`runbook sandbox up
--load-rate`): at 100 requests a second the SPRT's ~112 requests take about a second (issue 27's
goal: exit ≤ 2x bare kubectl at 100 req/s, restore ≤ 1.5x at any rate).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SERVICE = "veza-backend-api"
STABLE = 10  # consecutive answers (one second) of the previous version that count as "serving 100 %"


class VersionPoller(threading.Thread):
    """Samples the Service's /version ten times a second; remembers (time, version)."""

    def __init__(self, url: str, network: Any = None) -> None:
        super().__init__(daemon=True)
        self.url, self.samples, self.stopped = url, [], threading.Event()
        self.network = network  # the cluster network a Service's cluster IP lives in (runbooks_sandbox.network)

    def run(self) -> None:
        if self.network is not None:  # cluster IPs answer inside the sandbox's network namespace only
            self.network.call(self._poll, timeout=None)
        else:
            self._poll()

    def _poll(self) -> None:
        while not self.stopped.is_set():
            at = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=2) as reply:
                    version = json.loads(reply.read()).get("version")
            except (OSError, ValueError):
                version = "error"
            self.samples.append((at, version))
            time.sleep(0.1)  # 10 requests/s: fine-grained enough, and light on a 2-core machine

    def serving_since(self, version: str) -> float | None:
        """Start of the final run of answers that are all ``version``, if it is ≥ STABLE long."""
        run_start, run_length = None, 0
        for at, seen in self.samples:
            if seen == version:
                run_start, run_length = (run_start if run_length else at), run_length + 1
            else:
                run_start, run_length = None, 0
        return run_start if run_length >= STABLE else None

    def stop_when_stable(self, version: str, timeout_s: float = 60) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.serving_since(version) is None:
            time.sleep(0.1)
        self.stopped.set()
        self.join()
        return self.serving_since(version)


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

    def service_url(self, service: str = SERVICE) -> str:
        spec = json.loads(self.kubectl("get", "service", service, "-o", "json").stdout)["spec"]
        return f"http://{spec['clusterIP']}:{spec['ports'][0]['port']}/version"

    def image_version(self) -> str:
        deploy = json.loads(self.kubectl("get", "deployment", SERVICE, "-o", "json").stdout)
        return deploy["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1]

    def failed(self, since: datetime, service: str = SERVICE) -> int:
        out = self.runbook("sandbox", "traffic", "--json", "--state-dir", str(self.state),
                           "--since", since.isoformat().replace("+00:00", "Z"))
        return json.loads(out.stdout)[service]["failed"]

    def summary(self, stdout: str) -> dict:
        from runbooks_lib.run.runner import read_summary

        record = next(l[8:] for l in stdout.splitlines() if l.startswith("record: "))
        return read_summary(Path(record))

    def set_image(self, version: str) -> None:
        self.kubectl("set", "image", f"deployment/{SERVICE}", f"{SERVICE}=registry.veza.app/{SERVICE}:{version}")
        self.kubectl("rollout", "status", f"deployment/{SERVICE}", "--timeout=120s")

    def timed(self, command: list[list[str]], previous: str) -> tuple[float | None, float, list[subprocess.CompletedProcess[str]], float]:
        """Run commands one after another (stopping at a failure) while polling the Service.
        Returns (restore_from_command_s, exit_s, results, the wall clock start)."""
        from runbooks_sandbox.network import ClusterNetwork

        poller = VersionPoller(self.service_url(), ClusterNetwork(self.state))
        poller.start()
        time.sleep(0.1)  # the poller sees the new version before the command starts
        wall, began = time.time(), time.monotonic()
        results = []
        for args in command:
            results.append(subprocess.run(args, capture_output=True, text=True, env=self.env, cwd=REPO, timeout=600))
            if results[-1].returncode != 0:
                break
        exit_s = time.monotonic() - began
        serving = poller.stop_when_stable(previous)
        return (None if serving is None else max(0.0, serving - began)), exit_s, results, wall

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
        return self.summary(out)["figures"].get("flip_back_s"), self.failed(after, service)

    def close(self) -> None:
        self.runbook("sandbox", "down", "--state-dir", str(self.state))
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.rmtree(self.records, ignore_errors=True)


def _since(wall: float, iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - wall


def where_the_time_goes(summary: dict, wall: float, exit_s: float) -> str:
    """Command start → kernel's start() → each step → summary → command exit, from the record."""
    parts = [f"start() at {_since(wall, summary.get('started')):.2f}"]
    for step in summary.get("steps", []):
        parts.append(f"{step['name']} {step['duration_s']:.2f}")
    finished = _since(wall, summary.get("finished"))
    parts.append(f"finish() at {finished:.2f}; after it {exit_s - finished:.2f} to exit")
    return ", ".join(parts)


def _stats(values: list[float]) -> str:
    return f"min {min(values):.2f} / median {statistics.median(values):.2f} / max {max(values):.2f}"


def main(rounds: int, flip_back: bool, verify_s: float, load_rate: float) -> None:
    bench = Bench()
    runbook_cmd = [sys.executable, "-m", "runbooks_lib.cli", "run", "notebooks/rollback.ipynb", "--env", "sandbox",
                   "-p", "service", SERVICE, "-p", "verify_s", f"{verify_s:g}"]
    kubectl = ["kubectl", "--kubeconfig", str(bench.state / "kubeconfig"), "-n", "veza-sandbox"]
    try:
        began = time.monotonic()
        up = bench.runbook("sandbox", "up", "--state-dir", str(bench.state), "--load-rate", f"{load_rate:g}")
        assert up.returncode == 0, up.stderr
        print(f"sandbox up: {time.monotonic() - began:.1f} s; load {load_rate:g} requests/s per Service")
        previous = bench.image_version()
        figures: dict[str, list[float]] = {k: [] for k in ("rb_restore", "rb_exit", "rb_ttr", "rb_window", "k_restore",
                                                            "k_exit", "rb_judged", "rb_needed", "rb_needed_s",
                                                            "rb_decided")}
        for round_ in range(1, rounds + 1):
            bench.set_image("v1.6.0")
            since = datetime.now(timezone.utc)
            restore, exit_s, results, wall = bench.timed([runbook_cmd], previous)
            assert results[-1].returncode == 0 and restore is not None, results[-1].stdout + results[-1].stderr
            summary = bench.summary(results[-1].stdout)
            figures["rb_restore"].append(restore)
            figures["rb_exit"].append(exit_s)
            figures["rb_ttr"].append(summary["figures"]["time_to_rollback_s"])
            figures["rb_window"].append(summary["figures"].get("judged_window_s") or 0.0)
            figures["rb_decided"].append(1.0 if summary["figures"].get("decided_by_evidence") else 0.0)
            judged, needed = summary["figures"].get("judged_requests"), summary["figures"].get("judged_requests_needed")
            if judged and needed and figures["rb_window"][-1]:
                # At the rate the target was judged at, how long a window the SPRT's evidence needs.
                figures["rb_judged"].append(judged)
                figures["rb_needed"].append(needed)
                figures["rb_needed_s"].append(needed / (judged / figures["rb_window"][-1]))
            print(f"round {round_}: runbook: restore_from_command_s {restore:.2f}, exit {exit_s:.2f} "
                  f"(time_to_rollback_s {figures['rb_ttr'][-1]:.2f}), failed requests {bench.failed(since)}")
            print(f"  where: {where_the_time_goes(summary, wall, exit_s)}")
            bench.set_image("v1.6.0")
            since = datetime.now(timezone.utc)
            restore, exit_s, results, _ = bench.timed(
                [kubectl + ["rollout", "undo", f"deployment/{SERVICE}"],
                 kubectl + ["rollout", "status", f"deployment/{SERVICE}", "--timeout=120s"]], previous)
            assert results[-1].returncode == 0 and restore is not None, results[-1].stderr
            figures["k_restore"].append(restore)
            figures["k_exit"].append(exit_s)
            print(f"round {round_}: kubectl undo && status: restore_from_command_s {restore:.2f}, exit {exit_s:.2f}, "
                  f"failed requests {bench.failed(since)}")
        restore_ratios = [r / k for r, k in zip(figures["rb_restore"], figures["k_restore"])]
        exit_ratios = [r / k for r, k in zip(figures["rb_exit"], figures["k_exit"])]
        print(f"\nover {rounds} rounds (min / median / max):")
        print(f"restore_from_command_s  runbook  {_stats(figures['rb_restore'])}")
        print(f"restore_from_command_s  kubectl  {_stats(figures['k_restore'])}")
        print(f"restore ratio runbook / kubectl  {_stats(restore_ratios)}   (goal ≤ 1.5)")
        print(f"exit_s                  runbook  {_stats(figures['rb_exit'])}")
        print(f"exit_s                  kubectl  {_stats(figures['k_exit'])}")
        print(f"exit ratio runbook / kubectl     {_stats(exit_ratios)}   (goal ≤ 2; verify_s {verify_s:g})")
        print(f"judged window (s, the runbook's judged_window_s)  {_stats(figures['rb_window'])}; decided by the "
              f"evidence in {sum(figures['rb_decided']):.0f} of {rounds} rounds (else by verify_s's end)")
        print(f"time_to_rollback_s (the runbook's own figure)  {_stats(figures['rb_ttr'])}")
        if figures["rb_needed"]:
            print(f"requests judged in that window  {_stats(figures['rb_judged'])}")
            print(f"requests an SPRT needs to rule out 5 % errors (the record's evidence)  {_stats(figures['rb_needed'])}")
            print(f"window that needs at the judged rate (s)  {_stats(figures['rb_needed_s'])}: the exit's statistical "
                  "floor on this traffic is the first target pod's readiness plus this")
        if flip_back:
            flip_back_s, failed_after = bench.blue_green_flip_back()
            print(f"blue-green flip-back: {flip_back_s} s (goal ≤ 5 s); failed requests in the 3 s after it: {failed_after}")
    finally:
        bench.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-flip-back", dest="flip_back", action="store_false", help="skip the blue-green scenario")
    parser.add_argument("--verify-s", type=float, default=5.0, help="the runbook's verify_s (default: the notebook's 5)")
    parser.add_argument("--load-rate", type=float, default=10.0,
                        help="the sandbox load generator's requests/s per Service (default: sandbox up's 10)")
    args = parser.parse_args()
    if args.rounds < 1 or args.load_rate <= 0 or args.verify_s < 0:
        parser.error("--rounds ≥ 1, --load-rate > 0 and --verify-s ≥ 0")
    main(args.rounds, args.flip_back, args.verify_s, args.load_rate)
