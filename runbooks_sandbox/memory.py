"""What the sandbox weighs: resident memory (RSS) of its servers, its supervisor and its pods.

``runbook sandbox status`` states the memory cost of running the catalog's shape (every
replica the catalog asks for is a process), per component and per Deployment. A component
counts its process and every descendant (PostgreSQL backends, a Job's kernel); the
supervisor counts only itself, its pods being shown apart, grouped by their ``app`` label.
"""
from __future__ import annotations

from typing import Iterable, Mapping

__all__ = ["rss_mb", "memory_report"]


def _tree_rss(pids: Iterable[int], *, descendants: bool = True) -> int:
    """Bytes resident in these processes (and their descendants), each process counted once."""
    import psutil

    seen: set[int] = set()
    total = 0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            family = [root, *(root.children(recursive=True) if descendants else [])]
        except psutil.Error:
            continue
        for process in family:
            if process.pid in seen:
                continue
            seen.add(process.pid)
            try:
                total += process.memory_info().rss
            except psutil.Error:
                pass
    return total


def rss_mb(pids: Iterable[int], *, descendants: bool = True) -> float:
    """Resident memory of these processes (and their descendants) in MiB, one decimal."""
    return round(_tree_rss(pids, descendants=descendants) / 2**20, 1)


def memory_report(components: Mapping[str, int], pod_pids: Mapping[str, int],
                  pod_apps: Mapping[str, str]) -> dict[str, object]:
    """``{"total_mb", "components": {name: mb}, "pods_mb", "by_app": {app: {"pods", "mb"}}}``.

    ``components`` maps a component to its PID; ``pod_pids`` is the runtime's
    ``namespace/pod/container -> PID``; ``pod_apps`` maps ``namespace/pod`` to its app label
    (pods without one are grouped under their namespace).
    """
    # The pods' processes are children of the node agent: counted under their apps, not twice.
    parts = {name: rss_mb([pid], descendants=name != "node_agent")
             for name, pid in components.items()}
    groups: dict[str, list[int]] = {}
    pods_of: dict[str, set[str]] = {}
    for key, pid in pod_pids.items():
        namespace, pod, _ = key.split("/", 2)
        app = pod_apps.get(f"{namespace}/{pod}") or namespace
        groups.setdefault(app, []).append(pid)
        pods_of.setdefault(app, set()).add(pod)
    by_app = {app: {"pods": len(pods_of[app]), "mb": rss_mb(pids)} for app, pids in sorted(groups.items())}
    pods_mb = round(sum(entry["mb"] for entry in by_app.values()), 1)
    return {"total_mb": round(sum(parts.values()) + pods_mb, 1), "components": parts,
            "pods_mb": pods_mb, "by_app": by_app}
