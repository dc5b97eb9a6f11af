"""Only runbooks_lib.platform.cluster talks to the Kubernetes client: runbook modules use its named operations."""
from __future__ import annotations

import re
from pathlib import Path

LIB = Path(__file__).resolve().parent.parent / "runbooks_lib"
# The client's API objects and Cluster's private helpers, as other modules would reach for them.
REACHING_IN = re.compile(r"\.(core|apps|coordination|custom)\.\w+\(|\._dict\(|\._dry\b")


def test_no_module_but_cluster_reaches_into_the_client() -> None:
    offenders = []
    for path in sorted(LIB.rglob("*.py")):
        if path.name in ("cluster.py", "kube.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if REACHING_IN.search(line) and "fsspec.core" not in line:
                offenders.append(f"{path.relative_to(LIB)}:{number}: {line.strip()}")
    assert not offenders, "use Cluster's named operations instead:\n" + "\n".join(offenders)
