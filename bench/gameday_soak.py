"""How often the main job passes: N complete game days, each on a fresh sandbox, as `make demo` runs one.

One green game day proves little when outcomes depend on timing (a rollout a second slower, a
scrape a second later). Each round stops any sandbox of this checkout, starts a fresh one and runs
`runbook gameday --env sandbox`, exactly as `make demo` does, in this checkout (records accumulate
under outputs/, as in a checkout where sandboxes come and go). Per round it prints the scenarios
not as expected, the failed requests after the last scenario started, and the round's time; then
passed/total. A round passes when the game day exits 0: every scenario as expected and no request
failed after the last one started.

    .venv/bin/python bench/gameday_soak.py --runs 10 [--keep-going]

Each round's full output is kept in outputs/soak/<started>/round-<n>.log. A benchmark, not a test:
it takes about seven minutes a round on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNBOOK = [sys.executable, "-m", "runbooks_lib.cli"]
FAILED_LINE = re.compile(r"failed requests since the last scenario started: (\d+) of (\d+)")


@dataclass
class Round:
    number: int
    passed: bool
    exit_code: int
    seconds: float
    not_as_expected: list[str] = field(default_factory=list)
    failed_after_last: int | None = None
    requests_after_last: int | None = None
    log: str = ""


def not_as_expected(output: str) -> list[str]:
    """The scenarios whose row in the game day's table says NO, with the table's reason."""
    rows = []
    for line in output.splitlines():
        if re.search(r"\s{2}NO \(", line) and not line.startswith("==="):
            name = re.split(r"\s{2,}", line.strip())[0]
            reason = re.search(r"NO \(([^)]*)\)", line)
            rows.append(f"{name} ({reason.group(1) if reason else 'NO'})")
    return rows


def one_round(number: int, logs: Path) -> Round:
    began = time.monotonic()
    log = logs / f"round-{number}.log"
    with log.open("w") as out:
        for step in (["sandbox", "down"], ["sandbox", "up"], ["gameday", "--env", "sandbox"]):
            out.write(f"\n$ runbook {' '.join(step)}\n")
            out.flush()
            done = subprocess.run([*RUNBOOK, *step], cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True)
            if done.returncode != 0:
                break
    text = log.read_text()
    failed = FAILED_LINE.search(text)
    result = Round(number, done.returncode == 0 and step[0] == "gameday", done.returncode,
                   round(time.monotonic() - began, 1), not_as_expected(text),
                   int(failed.group(1)) if failed else None, int(failed.group(2)) if failed else None,
                   str(log.relative_to(REPO)))
    if step[0] != "gameday":
        result.not_as_expected = [f"`runbook {' '.join(step)}` failed (exit {done.returncode}): see {result.log}"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="game days to run (default 10)")
    parser.add_argument("--keep-going", action="store_true", help="do not stop the sandbox after the last round")
    args = parser.parse_args()
    started = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    logs = REPO / "outputs" / "soak" / started
    logs.mkdir(parents=True, exist_ok=True)
    rounds = []
    for number in range(1, args.runs + 1):
        print(f"round {number}/{args.runs} ...", flush=True)
        result = one_round(number, logs)
        rounds.append(result)
        failed = ("?" if result.failed_after_last is None
                  else f"{result.failed_after_last} of {result.requests_after_last}")
        print(f"round {number}: {'PASSED' if result.passed else 'FAILED'} in {result.seconds:.0f} s; "
              f"failed requests after the last scenario started: {failed}; "
              f"not as expected: {', '.join(result.not_as_expected) or 'none'}", flush=True)
    if not args.keep_going:
        subprocess.run([*RUNBOOK, "sandbox", "down"], cwd=REPO, capture_output=True)
    passed = sum(r.passed for r in rounds)
    durations = sorted(r.seconds for r in rounds)
    print(f"\npassed: {passed}/{len(rounds)} game days; each {durations[0]:.0f}–{durations[-1]:.0f} s "
          f"(median {durations[len(durations) // 2]:.0f} s); logs in {logs.relative_to(REPO)}")
    (logs / "soak.json").write_text(json.dumps([asdict(r) for r in rounds], indent=2))
    return 0 if passed == len(rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
