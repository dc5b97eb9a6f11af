"""Time a 3-replica rolling update in the sandbox with instant pod readiness.

The store, the controllers and the built-in instant runtime run in-process (no HTTP): the
figure is the controllers' own latency, from the image change to the moment kubectl's
rollout-status logic would report success (all replicas updated and available, none old).

    .venv/bin/python bench/rolling_update.py [--rounds 20] [--replicas 3] [--surge 25%] [--unavailable 25%]
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

from runbooks_sandbox.models.api import StoreEvent
from runbooks_sandbox.models.controllers import start_controllers
from runbooks_sandbox.models.instant_runtime import InstantRuntime
from runbooks_sandbox.models.resources import DEPLOYMENTS
from runbooks_sandbox.models.store import MemoryStore

NS = "default"


def rolled_out(d: dict[str, Any]) -> bool:
    """kubectl rollout status's success test (polymorphichelpers/rollout_status.go)."""
    status, replicas = d.get("status") or {}, d["spec"]["replicas"]
    count = lambda field: int(status.get(field) or 0)  # noqa: E731
    return (d["metadata"]["generation"] <= count("observedGeneration") and count("updatedReplicas") >= replicas
            and count("replicas") <= count("updatedReplicas") and count("availableReplicas") >= count("updatedReplicas"))


def deployment(replicas: int, surge: str, unavailable: str) -> dict[str, Any]:
    return {"metadata": {"name": "bench"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                     "template": {"metadata": {"labels": {"app": "bench"}},
                                  "spec": {"containers": [{"name": "app", "image": "bench:0"}]}}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--surge", default="25%")
    parser.add_argument("--unavailable", default="25%")
    args = parser.parse_args()

    store = MemoryStore(event_history=10000)
    runtime = InstantRuntime(ready_after=0.0)
    runtime.start(store)
    controllers = start_controllers(store)
    done = threading.Event()

    def watch_deployment(event: StoreEvent) -> None:
        if event.resource == DEPLOYMENTS and rolled_out(event.object):
            done.set()

    unsubscribe = store.subscribe(watch_deployment)
    try:
        store.create(DEPLOYMENTS, NS, deployment(args.replicas, args.surge, args.unavailable))
        if not done.wait(30):
            raise SystemExit("the first rollout did not complete")
        durations, writes = [], []
        for round_ in range(1, args.rounds + 1):
            done.clear()
            rv_before = store.resource_version
            started = time.perf_counter()
            store.patch(DEPLOYMENTS, NS, "bench", {"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": f"bench:{round_}"}]}}}}, "application/strategic-merge-patch+json")
            if not done.wait(30):
                raise SystemExit(f"rollout {round_} did not complete")
            durations.append(time.perf_counter() - started)
            writes.append(store.resource_version - rv_before)
            controllers.wait_idle()  # let old-RS cleanup finish before the next round
    finally:
        unsubscribe()
        controllers.stop()
        runtime.stop()
        store.close()

    ms = sorted(d * 1000 for d in durations)
    print(f"rolling update of {args.replicas} replicas (maxSurge {args.surge}, maxUnavailable {args.unavailable}), "
          f"instant readiness, {args.rounds} rounds, in-process store + controllers")
    print(f"  time to rolled out: median {statistics.median(ms):.1f} ms, min {ms[0]:.1f} ms, "
          f"max {ms[-1]:.1f} ms")
    print(f"  store writes per rollout: median {statistics.median(writes):.0f}")


if __name__ == "__main__":
    main()
