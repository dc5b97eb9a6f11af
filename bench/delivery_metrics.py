"""Delivery metrics over 10 000 generated records: cold catalog (no cache) and warm.

    .venv/bin/python bench/delivery_metrics.py [--records 10000] [--keep DIR]

Goal (issue 16): the figures of 10 000 records in ≤ 5 s. "report" is the catalog read plus the
classification; "tables" is every table the notebook shows; plots are timed apart (matplotlib).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from runbooks_lib.procedures.delivery import delivery_report, plots
from runbooks_lib.records.catalog import Catalog

# The made-up records live with the tests (tests/generators), outside the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.generators.delivery import generate_history  # noqa: E402

GOAL_S = 5.0


def timed(label: str, action: Callable[[], Any]) -> tuple[Any, float]:
    begun, cpu = time.perf_counter(), time.process_time()
    result = action()
    seconds = time.perf_counter() - begun
    # CPU time too: on a shared machine the wall time says as much about the neighbours as about us
    print(f"{label:44} {seconds:7.3f} s  (cpu {time.process_time() - cpu:6.3f} s)")
    return result, seconds


def figures_of(root: Path, commits: Any) -> Any:
    report = delivery_report(root=root, commits=commits)
    for name in report.TABLES:
        report.titled(name)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="write the records here and keep them")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    # The notebook's kernel has pandas and matplotlib loaded before it computes: so does the bench.
    timed("import pandas and matplotlib (not counted)", lambda: (__import__("pandas"), __import__("matplotlib.pyplot")))
    root = args.keep or Path(tempfile.mkdtemp(prefix="delivery-bench-"))
    try:
        history, _ = timed(f"generate {args.records} records", lambda: generate_history(root, args.records, filler=20))
        size = sum(p.stat().st_size for p in root.rglob("*.ipynb"))
        print(f"{'records on disk':44} {size / 1e6:7.1f} MB")
        (root / ".catalog.json").unlink(missing_ok=True)
        report, cold = timed("cold catalog: report + every table", lambda: figures_of(root, history.commits))
        print(f"{'   records / deployments':44} {report.events.records_read} / {len(report.events.deployments)}")
        _, warm = timed("warm catalog: report + every table", lambda: figures_of(root, history.commits))
        _, rows = timed("   of which the catalog's rows (warm)", lambda: Catalog(root).rows())
        (root / ".catalog.json").unlink()
        timed("   the catalog's rows alone, cold", lambda: Catalog(root).rows())
        draw = [plots.plot_frequency, plots.plot_lead_time, plots.plot_change_failure, plots.plot_recovery,
                plots.plot_success, plots.plot_rollbacks, plots.plot_canary_aborts, plots.plot_drills]
        timed("the eight plots", lambda: [d(report) for d in draw])
        for name, value in report.figures().items():
            print(f"   {name:41} {value}")
        print(f"{'goal':44} ≤ {GOAL_S:.1f} s: cold {'met' if cold <= GOAL_S else 'MISSED'}, "
              f"warm {'met' if warm <= GOAL_S else 'MISSED'}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
