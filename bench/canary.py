"""Canary judge speed and false alarms, against the statistical floor and a Flagger-style fixed rule.

Starts its own sandbox. For each load (the default 10 requests/s per service, then 100/s so a
5 % canary sees 5 requests/s) and each regression (5 % errors, 8 % errors, +300 ms), runs one
canary of veza-backend-api through the library (``CanaryRun``: preflight, canary at weight 0,
judged steps every 5 s) and prints:

- time to abort (DESIGN.md: canary at 0 % minus the canary's first request, from the load
  generator's report), the step it happened at and the layer that decided;
- the statistical floor: the expected canary requests Wald's SPRT needs for the same bounds
  (1 % vs 5 %, alpha = beta = 0.01) at the true error rate, divided by the canary's request rate;
  our ratio to it (a latency regression has no count-based floor: n/a);
- a Flagger-style fixed rule on the same looks: checks SR ≥ 99 % and p99 ≤ 500 ms, abort after 5
  failed checks; and the guide's Flagger config (1 min × 5): 5 min when every minute's check
  fails, more when a minute's few requests may hold no error (binomial), never for a regression
  the SLOs do not see.

Then a good canary (v1.6.0 at 5 %, 100 requests/s) is recorded for 40 looks, and 20 good canaries
are replayed offline from it (block bootstrap of the recorded looks) through our judge and the
fixed rule: false aborts, goal 0. Goals (issue 12): ≤ 30 s at the higher load, ≤ 1.5x the floor.

Last (issue 27), the erroring release (8 % errors) at 1 request a second to the canary (load 20/s,
5 % of it), ``--erroring-rounds`` times: time to abort against the statistical floor, min / median
/ max (goal ≤ 1.5x the floor).

    .venv/bin/python bench/canary.py [--looks 40] [--canaries 20] [--loads 10,100] [--erroring-rounds 5]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SERVICE = "veza-backend-api"
INTERVAL_S = 5.0
ALPHA = BETA = 0.01
SCENARIOS = (("5 % errors", "v1.5.5-errors5", 0.05), ("8 % errors", "v1.5.1-errors", 0.08), ("+300 ms", "v1.5.6-slow300", None))


class Sandbox:
    def __init__(self) -> None:
        self.state = Path(tempfile.mkdtemp(prefix="veza-bench-"))
        self.state.chmod(0o755)
        self.home = Path(tempfile.mkdtemp(prefix="veza-bench-home-"))  # journals of the bench's runs
        os.environ.update(RUNBOOKS_HOME=str(REPO), RUNBOOKS_SANDBOX_ENV=str(self.state / "env"),
                          RUNBOOKS_RECORDS_URL=str(self.home / "records"))

    def runbook(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "runbooks_lib.cli", *args, "--state-dir", str(self.state)],
                                capture_output=True, text=True, cwd=REPO, timeout=600)
        if result.returncode != 0:
            raise SystemExit(f"runbook {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def load(self, rate: float) -> None:
        self.runbook("sandbox", "load", "--rate", f"{rate:g}", "--service", SERVICE)

    def down(self) -> None:
        subprocess.run([sys.executable, "-m", "runbooks_lib.cli", "sandbox", "down", "--state-dir", str(self.state)],
                       capture_output=True, cwd=REPO, timeout=300)
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.rmtree(self.home, ignore_errors=True)


def new_run(profile: Any, home: Path, version: str, max_hold_s: float) -> Any:
    from runbooks_lib.procedures.canary import CanaryParams, CanaryRun
    from runbooks_lib.run.context import RunContext

    params = CanaryParams(service=SERVICE, version=version, interval_s=INTERVAL_S, max_hold_s=max_hold_s)
    ctx = RunContext("canary_bench", "sandbox", profile, params.model_dump(), home=home)
    return CanaryRun(ctx, params)


def regression(profile: Any, home: Path, version: str) -> Any:
    run = new_run(profile, home, version, max_hold_s=600)
    try:
        run.preflight()
        run.start_canary()
        run.run_steps()
        run.summary()
    finally:
        run.ctx.finish(run.outcome or "failed")  # releases the lock
    return run


def floor_s(true_rate: float | None, canary_rps: float) -> tuple[float | None, float | None]:
    from runbooks_lib.procedures.canary import expected_requests

    if true_rate is None:
        return None, None
    requests = expected_requests(0.01, 0.05, ALPHA, BETA, true_rate=true_rate)
    return requests, requests / canary_rps


def fixed_rule(windows: list[Any], threshold: int = 5) -> tuple[int | None, float]:
    """Flagger's rule on the looks: index of the abort (or None) and the share of failed checks.
    Like Flagger, a look without a value counts as a failed check."""
    failed, first = 0, None
    for i, w in enumerate(windows):
        sr, p99 = w.value("canary_success_rate"), w.value("canary_p99_ms")
        if sr is None or p99 is None or sr < 0.99 or p99 > 500:
            failed += 1
            if failed >= threshold and first is None:
                first = i
    return first, failed / max(len(windows), 1)


def guide_rule_s(true_rate: float | None, canary_rps: float, interval_s: float = 60, threshold: int = 5) -> float | None:
    """Expected time to abort of the guide's Flagger config (1 m interval and window, threshold 5):
    each minute's success-rate check fails with the binomial chance of more than 1 % errors among
    that minute's canary requests; p99 checks never fail for a latency regression under the SLO."""
    from scipy.stats import binom

    if true_rate is None:
        return None
    n = max(1, round(canary_rps * interval_s))
    fail = 1 - binom.cdf(math.floor(0.01 * n), n, true_rate)
    return interval_s * threshold / fail if fail > 0 else None


def layer_of(why: str) -> str:
    return why.split(":", 1)[0]


def run_regressions(box: Sandbox, profile: Any, loads: tuple[float, ...]) -> list[dict[str, Any]]:
    rows = []
    for load in loads:
        box.load(load)
        time.sleep(5)
        for name, version, true_rate in SCENARIOS:
            began = time.monotonic()
            run = regression(profile, box.home, version)
            wall = time.monotonic() - began
            last = run.judge.decisions[-1] if run.judge.decisions else None
            tta = run.ctx.figures.get("time_to_abort_s")
            canary_rps = load * 0.05
            requests, floor = floor_s(true_rate, canary_rps)
            index, _ = fixed_rule(run.windows)
            guide = guide_rule_s(true_rate, canary_rps)
            rows.append({
                "load/s": load, "canary req/s": canary_rps, "regression": name, "outcome": run.outcome,
                "abort at": f"{last.weight:g} %" if last else "-", "layer": layer_of(last.why) if last else "-",
                "time to abort s": tta, "floor requests": None if requests is None else round(requests),
                "floor s": None if floor is None else round(floor, 1),
                "ratio": None if (floor is None or tta is None) else round(tta / floor, 2),
                "fixed rule @5 s x5": f"{(index + 1) * INTERVAL_S:.0f} s" if index is not None else f"> {len(run.windows) * INTERVAL_S:.0f} s",
                "Flagger guide 1 m x5": f"~{guide:.0f} s" if guide else "never",
                "wall s": round(wall, 1),
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def erroring_at_one_per_second(box: Sandbox, profile: Any, rounds: int) -> list[tuple[float, float]]:
    """(time to abort, its ratio to the floor) of the 8 % erroring release, ``rounds`` times, with
    the canary at 1 request a second (5 % of a 20/s load)."""
    name, version, true_rate = SCENARIOS[1]
    box.load(20)
    time.sleep(5)
    _, floor = floor_s(true_rate, 1.0)
    results = []
    for round_ in range(1, rounds + 1):
        run = regression(profile, box.home, version)
        tta = run.ctx.figures.get("time_to_abort_s")
        print(json.dumps({"round": round_, "regression": name, "canary req/s": 1.0, "outcome": run.outcome,
                          "time to abort s": tta, "floor s": None if floor is None else round(floor, 1)}), flush=True)
        if tta is not None and floor:
            results.append((tta, tta / floor))
    return results


def _stats(values: list[float]) -> str:
    import statistics

    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}" if values else "-"


def record_good(profile: Any, home: Path, looks: int) -> list[Any]:
    """A good canary held at 5 % for ``looks`` looks, each measured as the judge would see it."""
    from runbooks_lib.procedures.canary.judge import Window

    run = new_run(profile, home, "v1.6.0", max_hold_s=600)
    recorded = []
    try:
        run.preflight()
        run.start_canary()
        run.router.set_routes(95, 5)
        last = datetime.now(timezone.utc)
        for _ in range(looks):
            time.sleep(INTERVAL_S)
            now = datetime.now(timezone.utc)
            readings = run.looker.readings((now - last).total_seconds())
            recorded.append(Window(now, 1, 5, False, readings, run.looker.series(15)))
            last = now
        run.abort("bench: recording done")
    finally:
        run.ctx.finish("aborted")
    return recorded[1:]  # the first look's counters include the warm-up


def replay_good(recorded: list[Any], canaries: int, looks: int, seed: int = 1) -> tuple[int, int, int]:
    """(our false aborts, undecided, fixed rule's false aborts) over bootstrapped good canaries."""
    from runbooks_lib.procedures.canary import Judge, Policy

    steps = (5, 25, 50, 100)
    rng = random.Random(seed)
    ours = undecided = fixed = 0
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for _ in range(canaries):
        sample = [rng.choice(recorded) for _ in range(looks)]
        judge, step, end = Judge(Policy(max_hold_s=60)), 0, None
        for k, w in enumerate(sample):
            w = replace(w, at=t0 + timedelta(seconds=INTERVAL_S * k), step=step + 1, weight=steps[step],
                        last_step=step == len(steps) - 1)
            decision = judge.judge(w)
            if decision.action == "advance":
                step += 1
            if decision.action in ("abort", "promote"):
                end = decision.action
                break
        ours += end == "abort"
        undecided += end is None
        fixed += fixed_rule(sample)[0] is not None
    return ours, undecided, fixed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--looks", type=int, default=40, help="looks of the recorded good canary")
    parser.add_argument("--canaries", type=int, default=20)
    parser.add_argument("--loads", default="10,100", help="load generator rates to the service, comma-separated")
    parser.add_argument("--erroring-rounds", type=int, default=5,
                        help="rounds of the 8 %% erroring release at 1 req/s to the canary (0: skip)")
    args = parser.parse_args()
    if args.erroring_rounds < 0 or args.canaries < 1 or args.looks < 2:
        parser.error("--erroring-rounds ≥ 0, --canaries ≥ 1, --looks ≥ 2")
    box = Sandbox()
    try:
        started = time.monotonic()
        box.runbook("sandbox", "up")
        print(f"sandbox up in {time.monotonic() - started:.0f} s", flush=True)
        time.sleep(20)  # some baseline history for the preflight's healthy-baseline check
        from runbooks_lib.config.profiles import load_profile

        profile = load_profile("sandbox")
        rows = run_regressions(box, profile, tuple(float(x) for x in args.loads.split(",")))
        box.load(100)
        time.sleep(5)
        recorded = record_good(profile, box.home, args.looks)
        ours, undecided, fixed = replay_good(recorded, args.canaries, looks=12)
        erroring = erroring_at_one_per_second(box, profile, args.erroring_rounds) if args.erroring_rounds else []

        import pandas as pd

        pd.set_option("display.width", 250)
        pd.set_option("display.max_columns", 20)
        print("\nTime to abort a 5 % canary (interval 5 s; SPRT 1 % vs 5 %, alpha = beta = 0.01):")
        print(pd.DataFrame(rows).to_string(index=False))
        high = [r for r in rows if r["load/s"] >= 100]
        worst = max((r["time to abort s"] or math.inf) for r in high) if high else None
        ratios = [r["ratio"] for r in high if r["ratio"] is not None]
        print(f"\nGoal at the higher load: ≤ 30 s (worst {worst} s) and ≤ 1.5x the floor (ratios {ratios})")
        print(f"\nFalse aborts over {args.canaries} good canaries replayed from {len(recorded)} recorded looks "
              f"(v1.6.0 at 5 %, 5 req/s, 12 looks each): ours {ours} (undecided {undecided}), "
              f"fixed rule (SR/p99 vs SLO, 5 failures) {fixed}; goal 0")
        if args.erroring_rounds:
            floor = floor_s(SCENARIOS[1][2], 1.0)[1]
            print(f"\n8 % errors at 1 req/s to the canary, {len(erroring)} of {args.erroring_rounds} rounds aborted "
                  f"(min / median / max): time to abort {_stats([t for t, _ in erroring])} s, floor {floor:.1f} s, "
                  f"ratio {_stats([r for _, r in erroring])}; goal ≤ 1.5x")
    finally:
        box.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
