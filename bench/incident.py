"""Incident drill speed: from a bad version reaching veza-backend-api to the signals back within SLO.

Starts its own sandbox, then per round: records the fault time, deploys v1.5.1-errors with plain
kubectl (`kubectl set image`, as a hurried engineer would) and waits for it to roll out, then
runs the incident-response runbook headless at once (triggered_at = the fault time,
mitigation=rollback, execute_mitigation=True). Prints the record's figures — time_to_acknowledge_s,
time_to_mitigate_s, time_to_recover_s (fault → signals within SLO), failed_requests — and the
runbook's wall time. Goal (issue 13): time_to_recover_s ≤ 60 s (the guide's MTTR goal is 5 min).

    .venv/bin/python bench/incident.py [--rounds 1]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVICE = "veza-backend-api"
GOAL_S = 60.0


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
        return subprocess.run(["kubectl", "--kubeconfig", str(self.state / "kubeconfig"), "-n", "veza-sandbox", *args],
                              capture_output=True, text=True, timeout=300)

    def drill(self) -> dict:
        from runbooks_lib.run.runner import read_summary

        fault = datetime.now(timezone.utc)
        self.kubectl("set", "image", f"deployment/{SERVICE}", f"{SERVICE}=registry.veza.app/{SERVICE}:v1.5.1-errors")
        self.kubectl("rollout", "status", f"deployment/{SERVICE}", "--timeout=120s")
        rolled_out_s = (datetime.now(timezone.utc) - fault).total_seconds()
        began = time.monotonic()
        run = self.runbook("run", "notebooks/incident_response.ipynb", "--env", "sandbox",
                           "-p", "service", SERVICE, "-p", "severity", "P1", "-p", "summary", "bench: 5xx after a deploy",
                           "-p", "triggered_at", fault.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                           "-p", "mitigation", "rollback", "-p", "execute_mitigation", "True")
        wall = time.monotonic() - began
        if run.returncode != 0:
            raise SystemExit(f"the runbook failed (exit {run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        record = next(l[8:] for l in run.stdout.splitlines() if l.startswith("record: "))
        summary = read_summary(Path(record))
        figures = summary["figures"]
        steps = ", ".join(f"{s['name']} {s['duration_s']:.1f}" for s in summary["steps"])
        return {"runbook start → summary (s)": summary.get("duration_s"), "steps (s)": steps,"bad version rolled out after (s)": round(rolled_out_s, 1), "runbook wall time (s)": round(wall, 1),
                **{k: figures.get(k) for k in ("time_to_acknowledge_s", "time_to_mitigate_s", "time_to_recover_s",
                                               "failed_requests", "requests_during_incident")}, "record": record}

    def close(self) -> None:
        self.runbook("sandbox", "down", "--state-dir", str(self.state))
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.rmtree(self.records, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    bench = Bench()
    try:
        up = bench.runbook("sandbox", "up", "--state-dir", str(bench.state))
        if up.returncode != 0:
            raise SystemExit(f"sandbox up failed:\n{up.stderr}")
        results = []
        for round_ in range(1, args.rounds + 1):
            result = bench.drill()
            results.append(result)
            print(f"round {round_}:")
            for key, value in result.items():
                print(f"  {key:36} {value}")
        recover = [r["time_to_recover_s"] for r in results if r["time_to_recover_s"] is not None]
        if recover:
            median = statistics.median(recover)
            verdict = "within" if median <= GOAL_S else "OVER"
            print(f"time_to_recover_s (median of {len(recover)}): {median:.1f} s — {verdict} the {GOAL_S:.0f} s goal")
        else:
            print("the signals never came back within SLO during the runs")
        load = os.getloadavg()[0]
        print(f"(load average during the bench: {load:.1f} on {os.cpu_count()} cores)")
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
