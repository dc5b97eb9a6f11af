"""A resumed incident run (after an approval or a failure) does not page people a second time."""
from __future__ import annotations

from runbooks_lib.procedures.incident import IncidentParams, IncidentResponse
from runbooks_lib.run.replay import Replay

from ..kube_stub import HTTPStub, Reply
from .conftest import SERVICE, Platform


def test_the_declaration_is_replayed_not_sent_again(platform: Platform) -> None:
    with HTTPStub() as webhook:
        webhook.route("POST", r"/hooks/incident", lambda request, match: Reply(200, {"ok": True}))
        params = dict(service=SERVICE, severity="P2", summary="5xx after a release", notify=f"{webhook.url}/hooks/incident")
        first = platform.ctx("incident_response", **params)
        declared = first.run_step("Declare and acknowledge", IncidentResponse(first, IncidentParams(**params)).declare,
                                  key="declare", replay=True)
        assert len(webhook.requests) == 1

        resumed = platform.ctx("incident_response", **params)
        resumed.replay = Replay.load(first.journal.path)  # as `runbook resume` sets it up
        incident = IncidentResponse(resumed, IncidentParams(**params))
        again = resumed.run_step("Declare and acknowledge", incident.declare, key="declare", replay=True,
                                 on_replay=incident.declare_again)

    assert len(webhook.requests) == 1  # paged once
    assert resumed.steps[-1].outcome == "replayed"
    assert again.loc["acknowledged (UTC)", "value"] == declared.loc["acknowledged (UTC)", "value"]
    # The declaration shows its times to the second: the figure comes back to within a second.
    assert abs(resumed.figures["time_to_acknowledge_s"] - first.figures["time_to_acknowledge_s"]) <= 1
    assert incident.triggered.strftime("%Y-%m-%d %H:%M:%S") == declared.loc["triggered (UTC)", "value"][:19]
    assert [m.what for m in incident.timeline.ordered()][:2] == ["triggered", "acknowledged"]
