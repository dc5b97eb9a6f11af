"""Blue-green deploys (guide §6.1): green beside blue, test green, flip the Service, watch, decide.

Colours are a pod label, ``color``; the Service selects ``app=<service>,color=<live colour>``.
A Deployment without a colour yet is the blue one: it is labelled first (a zero-downtime
rolling restart) and the Service is pinned to blue before green exists, so green never gets
traffic before it is tested. The new Deployment is ``<service>-<colour>``. On success blue
is deleted (the guide's last step); on failure the Service flips back at once and green is
deleted.
"""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from ...display import Tables, show
from ...platform.checks import error_budget_check, pod_checks, smoke_checks
from .release import DeployRun, diff_objects
from ...errors import CheckFailed, NoData
from ...platform.rollout import CHANGE_CAUSE, wait_for_rollout
from ...platform.routing import SelectorRouter, Target

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BlueGreen", "Flip"]


@dataclass(frozen=True)
class Flip:
    to_colour: str
    at: float  # time.monotonic() of the flip
    duration_s: float


def _other(colour: str) -> str:
    return "green" if colour == "blue" else "blue"


class BlueGreen:
    """The blue-green part of a deploy run. ``live`` and ``new`` name Deployments; their colours
    alternate from one deploy to the next (``live_colour``, ``new_colour``)."""

    def __init__(self, deploy: DeployRun) -> None:
        self.deploy = deploy
        self.cluster = deploy.cluster
        self.service = deploy.params.service
        self.live = deploy.deployment_name  # the live Deployment, whatever its colour
        self.live_colour = self._template_colour(self.live) or "blue"
        self.new_colour = _other(self.live_colour)
        self.new = f"{self.service}-{self.new_colour}"  # the Deployment being tested, then flipped to
        self.flips: list[Flip] = []
        # Traffic moves through the Service-selector router (routing.SelectorRouter): the live
        # colour is the "primary", the new colour the "canary"; a flip is 0/100, a flip-back 100/0.
        self.router = SelectorRouter(self.cluster, Target(
            service=self.service, primary=self.live, canary=self.new,
            primary_labels={"color": self.live_colour}, canary_labels={"color": self.new_colour}))

    def run(self) -> None:
        """The guide's blue-green sequence, one record step each: prepare, deploy and test the new
        colour, flip, monitor (flip back on failure), retire the old colour."""
        from .release import VERIFY_TITLES

        ctx = self.deploy.ctx
        # Step names say the colours as they are this time (they alternate from one deploy to the
        # next); the keys a resumed run replays by stay the same.
        with ctx.step(f"Prepare the live colour ({self.live_colour})", key="bluegreen-prepare"):
            print(self.prepare())
        with ctx.step(f"Deploy and test the new colour ({self.new_colour})", key="bluegreen-deploy-new"), \
                self.abandon_new_on_failure():
            print(self.deploy_new())
            show(Tables(self.test_new(), VERIFY_TITLES))
        with ctx.step(f"Flip traffic to {self.new_colour}", key="bluegreen-flip"):
            print(self.flip_to_new())
        with ctx.step(f"Monitor {self.new_colour}", key="bluegreen-monitor"):
            show(Tables({"signals": self.monitor()}, VERIFY_TITLES))
        with ctx.step(f"Retire the old colour ({self.live_colour})", key="bluegreen-retire"):
            print(self.retire_live())

    def _template_colour(self, name: str) -> str | None:
        labels = self.cluster.deployment(name)["spec"]["template"]["metadata"].get("labels") or {}
        return labels.get("color")

    def _selector(self) -> dict[str, str]:
        return dict((self.cluster.service(self.service).get("spec") or {}).get("selector") or {})

    def prepare(self) -> str:
        """Label the live pods with their colour and pin the Service to it."""
        notes = []
        if self._template_colour(self.live) is None:
            self.cluster.patch_deployment(self.live, {"spec": {"template": {"metadata": {"labels": {"color": self.live_colour}}}}},
                                          what=f"label the pods color={self.live_colour}")
            if not self.cluster.dry_run:
                wait_for_rollout(self.cluster, self.live, self.deploy.ctx.profile.timeouts.rollout_s)
            notes.append(f"labelled {self.live}'s pods color={self.live_colour} (rolling restart)")
        if self._selector().get("color") != self.live_colour:
            self.router.setup()
            notes.append(f"pinned service {self.service} to color={self.live_colour}")
        return "; ".join(notes) or f"{self.live} is {self.live_colour} and serves all traffic"

    def deploy_new(self) -> str:
        """Create ``<service>-<colour>`` running the new version beside the live one, and wait."""
        live = self.cluster.deployment(self.live)
        body = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": self.new, "labels": dict(live["metadata"].get("labels") or {}, color=self.new_colour,
                                                             version=self.deploy.params.version),
                         "annotations": {CHANGE_CAUSE: self.deploy._change_cause()}},
            "spec": copy.deepcopy(live["spec"]),
        }
        spec = body["spec"]
        spec.pop("paused", None)
        spec["selector"] = {"matchLabels": {"app": self.service, "color": self.new_colour}}
        labels = spec["template"]["metadata"].setdefault("labels", {})
        labels.update(app=self.service, color=self.new_colour, version=self.deploy.params.version)
        labels.pop("pod-template-hash", None)
        for container in spec["template"]["spec"]["containers"]:
            if container["name"] == self.service:
                container["image"] = self.deploy.image
        created = self.cluster.create_deployment(body)
        self.deploy.diffs[self.new] = diff_objects(live, created)
        if self.cluster.dry_run:
            return f"dry run: {self.new} would be created\n\n{self.deploy.diffs[self.new]}"
        state = wait_for_rollout(self.cluster, self.new, self.deploy.ctx.profile.timeouts.rollout_s,
                                 on_progress=self.deploy._fail_fast)
        return f"{self.new} ready: {state.ready}/{state.desired} replicas of {self.deploy.params.version}"

    def test_new(self) -> dict[str, "pd.DataFrame"]:
        """Health of every green pod, smoke requests to one green pod, then enough requests over all
        green pods to tell an error rate over the SLO's budget from one within it: green gets no
        user traffic before the flip, so Prometheus has nothing to judge it on yet."""
        if self.cluster.dry_run:
            return {}
        selector = f"app={self.service},color={self.new_colour}"
        port = self.deploy.spec.port
        pods = pod_checks(self.cluster, self.service, self.deploy.spec, label_selector=selector)
        reach = self.cluster.reach
        urls = [url for name, ip in pods["ip"].items() if (url := reach.pod_url(str(name), ip, port))]
        smoke = smoke_checks(urls[0], self.deploy.spec, reach=reach)
        budget = error_budget_check(urls, self.deploy.spec, reach=reach,
                                    success_rate_min=self.deploy.ctx.profile.slo.success_rate_min)
        return {"pods": pods, "smoke": smoke, "budget": budget}

    def flip(self, colour: str | None = None) -> Flip:
        """Point the Service at ``colour`` (default: the new one)."""
        colour = colour or self.new_colour
        began = time.monotonic()
        if colour == self.new_colour:
            self.router.set_routes(0, 100)
        else:
            self.router.set_routes(100, 0)
        flip = Flip(colour, began, round(time.monotonic() - began, 3))
        self.flips.append(flip)
        return flip

    def flip_to_new(self) -> str:
        """Flip the Service to the new colour and wait until it alone answers."""
        flip = self.flip()
        if self.cluster.dry_run:
            return f"dry run: service {self.service} would select color={self.new_colour}"
        flip_s = self._wait_serving(self.deploy.params.version, since=flip.at)
        self.deploy.ctx.figure("flip_s", flip_s)
        return f"service {self.service} now selects color={self.new_colour}: {self.deploy.params.version} serves 100 % after {flip_s:.2f} s"

    @contextlib.contextmanager
    def abandon_new_on_failure(self) -> Iterator[None]:
        """Before the flip, a failing green is deleted; blue never stopped serving."""
        try:
            yield
        except Exception:
            if not self.cluster.dry_run:
                print(f"✗ {self.new_colour} failed before any traffic reached it: deleting {self.new}; {self.live} keeps serving")
                self._delete(self.new)
                self.deploy.ctx.figure("rolled_back", True)
                self.deploy.ctx.verdict(self.service, self.deploy.params.version, "bad",
                                        f"blue-green: the new colour ({self.new_colour}) failed its checks before the flip")
            raise

    def monitor(self) -> "pd.DataFrame":
        """Watch the new colour's golden signals for the monitoring window; flip back on failure."""
        if self.cluster.dry_run:
            return self._dry_table()
        try:
            # The whole window: the old colour stays ready to take traffic back until it ends, so
            # a fault that shows only after the first good seconds still flips back.
            table = self.deploy.judge_metrics(observe_s=self.deploy.params.monitor_s, bake=True)
            self.deploy.ctx.verdict(self.service, self.deploy.params.version, "good",
                                    "blue-green: served 100 % through the monitoring window within SLOs")
            return table
        except (CheckFailed, NoData) as failure:
            flip_back = self.flip(self.live_colour)
            flip_back_s = self._wait_serving(self.live_colour_version(), since=flip_back.at)
            self.deploy.ctx.figure("flip_back_s", flip_back_s)
            self.deploy.ctx.figure("rolled_back", True)
            self._delete(self.new)
            self.deploy.ctx.verdict(self.service, self.deploy.params.version, "bad",
                                    f"blue-green: flipped back after the flip: {failure}")
            raise CheckFailed(f"{failure} — flipped back to {self.live_colour} in {flip_back_s:.2f} s and deleted {self.new}") from failure

    def live_colour_version(self) -> str | None:
        """What the old colour runs: read from its image (a label may be stale)."""
        from ...platform.images import version_of_image

        return version_of_image(self.cluster.deployment_state(self.live).image)

    def _wait_serving(self, version: str | None, since: float) -> float:
        from ..rollback import wait_until_serving

        if version:
            wait_until_serving(self.cluster, self.service, version, timeout_s=30)
        return round(time.monotonic() - since, 3)

    def _dry_table(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame([{"dry run": "no traffic was moved; nothing to judge"}])

    def _delete(self, name: str) -> None:
        self.cluster.delete_deployment(name)  # already gone is fine

    def retire_live(self) -> str:
        """The new colour is good: delete the old Deployment (guide: decommission blue)."""
        self._delete(self.live)
        return f"deleted {self.live}; {self.new} ({self.deploy.params.version}) serves {self.service}"
