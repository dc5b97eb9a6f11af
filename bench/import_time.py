"""How long `import runbooks_lib` takes, against the heavy clients it must not pull in.

A runbook kernel imports the library first; papermill's kernel start is ~2 s already, so the
library should add milliseconds, not seconds. Prints the median of N fresh interpreters for
the library and for each heavy dependency imported alone, and the ratio.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

MODULES = ["runbooks_lib", "kubernetes", "pandas", "matplotlib.pyplot", "papermill", "hvac", "prometheus_api_client"]


def import_seconds(module: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main(rounds: int = 5) -> None:
    baseline = import_seconds("sys", rounds)
    print(f"interpreter start alone: {1000 * baseline:.0f} ms (median of {rounds})")
    library = import_seconds("runbooks_lib", rounds) - baseline
    for module in MODULES:
        cost = import_seconds(module, rounds) - baseline
        ratio = f"{cost / library:6.1f}x the library" if module != "runbooks_lib" and library > 0 else ""
        print(f"import {module:<24} {1000 * cost:7.0f} ms  {ratio}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
