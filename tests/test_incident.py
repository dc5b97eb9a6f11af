"""The incident runbook's pure parts on synthetic data: ranking, timeline, post-mortem, parameters, notices."""
from __future__ import annotations

import json
import math
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from pydantic import ValidationError

from runbooks_lib.procedures.incident.correlation import Change, breach_start, incident_breach, rank_changes, suggest
from runbooks_lib.procedures.incident.params import IncidentParams
from runbooks_lib.procedures.incident.postmortem import FOR_PEOPLE, PostMortem, render_html, render_markdown
from runbooks_lib.procedures.incident.timeline import Timeline

T0 = datetime(2026, 12, 1, 14, 0, tzinfo=timezone.utc)


def success_series(bad_from: int, bad_to: int | None = None, points: int = 60) -> pd.Series:
    """One point every 10 s from T0; below SLO (0.92) between the given indexes."""
    index = pd.DatetimeIndex([T0 + timedelta(seconds=10 * i) for i in range(points)])
    values = [0.92 if bad_from <= i < (bad_to or points) else 0.999 for i in range(points)]
    return pd.Series(values, index=index)


def deploy(minutes_before_breach: float, version: str, revision: int, service: str = "veza-backend-api") -> Change:
    breach = T0 + timedelta(seconds=300)
    return Change(at=breach - timedelta(minutes=minutes_before_breach), kind="deploy", service=service,
                  description=f"revision {revision}: image {version}", revision=revision, version=version,
                  previous_revision=revision - 1, previous_version="v1.5.0")


def test_breach_start_is_the_start_of_the_breach_before_the_trigger() -> None:
    series = success_series(30)
    assert breach_start(series, 0.99) == T0 + timedelta(seconds=300)
    # Two breaches: the one containing the reference wins over the earlier, ended one.
    two = success_series(5, 10).combine(success_series(40), min)
    assert breach_start(two, 0.99, reference=T0 + timedelta(seconds=450)) == T0 + timedelta(seconds=400)
    # A page set at the fault, shortly before the signals moved: the breach that follows, not the ended one.
    assert breach_start(two, 0.99, reference=T0 + timedelta(seconds=200)) == T0 + timedelta(seconds=400)
    # A breach long after the page is another story, and one that ended before it another incident:
    # neither dates this one (its changes are then ranked against the trigger).
    assert breach_start(two, 0.99, reference=T0 + timedelta(seconds=200), follow_s=60) is None
    # One that ended just before the page (within the slack of clocks and scrapes) is this one.
    assert breach_start(two, 0.99, reference=T0 + timedelta(seconds=110)) == T0 + timedelta(seconds=50)
    assert breach_start(two, 0.99, reference=T0 - timedelta(seconds=10)) == T0 + timedelta(seconds=50)
    # A short recovery inside the rate window is noise: with gap_s the two stretches are one.
    assert breach_start(two, 0.99, reference=T0 + timedelta(seconds=450), gap_s=310) == T0 + timedelta(seconds=50)
    assert breach_start(success_series(100), 0.99) is None  # never breached
    assert breach_start(success_series(30), 500, below=False) is None


def test_the_deploy_just_before_the_breach_ranks_first_and_is_rolled_back() -> None:
    breach = T0 + timedelta(seconds=300)
    bad = deploy(0.7, "v1.5.1-errors", 4)
    changes = [deploy(50, "v1.6.0", 3), bad,
               Change(at=breach - timedelta(minutes=2), kind="scale", service="veza-backend-api", description="scaled to 3"),
               deploy(0.5, "v1.6.0", 7, service="veza-chat-server")]
    ranked = rank_changes(changes, breach, services=["veza-backend-api"])
    assert ranked[0].change is bad
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    assert "42 s before the signals degraded" in ranked[0].evidence
    other = next(r for r in ranked if r.change.service == "veza-chat-server")
    assert other.score < ranked[0].score and "another service" in other.evidence
    advice = suggest(ranked, breach)
    assert advice.action == "rollback" and advice.to_revision == 3 and advice.service == "veza-backend-api"
    assert "error rate rose 42 s after v1.5.1-errors was deployed" in advice.reason
    assert "roll back veza-backend-api to revision 3 (v1.5.0)" in advice.reason


def test_a_change_after_the_breach_cannot_be_its_cause() -> None:
    breach = T0 + timedelta(seconds=300)
    late = Change(at=breach + timedelta(minutes=5), kind="deploy", service="veza-backend-api", description="late",
                  revision=5, version="v9", previous_revision=4)
    early = deploy(20, "v1.6.0", 3)
    ranked = rank_changes([late, early], breach, services=["veza-backend-api"])
    assert ranked[0].change is early and ranked[1].score <= 0.05


def test_the_failing_version_doubles_a_changes_score() -> None:
    breach = T0 + timedelta(seconds=300)
    change = deploy(10, "v1.5.4-crash", 4)
    plain = rank_changes([change], breach)[0].score
    matched = rank_changes([change], breach, failing_versions={"v1.5.4-crash"})[0]
    assert matched.score == pytest.approx(min(1.0, 2 * plain), abs=1e-3)
    assert "the failing pods run the image it introduced (v1.5.4-crash)" in matched.evidence


# -- the game day's failure: an old dip and a kubectl push seconds before the trigger ---------------

TRIGGER = T0 + timedelta(minutes=10)


def fine_frame(columns: dict[str, tuple[int, int | None, int | None]], seconds: int = 600) -> pd.DataFrame:
    """One point a second up to 20 s after the trigger, one column per series: (first second with
    data, first bad second, last bad second), counted from T0; NaN outside the series' life."""
    index = pd.DatetimeIndex([T0 + timedelta(seconds=i) for i in range(seconds + 21)])
    data = {}
    for name, (alive_from, bad_from, bad_to) in columns.items():
        values = []
        for i in range(len(index)):
            if i < alive_from:
                values.append(math.nan)
            elif bad_from is not None and bad_from <= i <= (bad_to if bad_to is not None else len(index)):
                values.append(0.92)
            else:
                values.append(0.999)
        data[name] = values
    return pd.DataFrame(data, index=index)


def kubectl_push(at_s: int, revision: int, version: str, previous: int, previous_version: str,
                 replica_set: str | None = None) -> Change:
    """A ReplicaSet's activation as the snapshot reads it: `kubectl set image`, no change-cause."""
    return Change(at=T0 + timedelta(seconds=at_s), kind="deploy", service="veza-backend-api",
                  description=f"veza-backend-api revision {revision}: image {version} (no change-cause)",
                  revision=revision, version=version, previous_revision=previous, previous_version=previous_version,
                  replica_set=replica_set or f"rs-{revision}")


def test_an_old_dip_inside_the_rate_window_does_not_date_a_push_seconds_before_the_trigger() -> None:
    """As in the failed game day: v1.8.0 was deployed minutes before (its release dipped), v1.7.0
    replaced it, then the bad release was pushed with `kubectl set image` 10 s before the trigger.
    The service's series, on a long rate window, never left the breach in between."""
    failing_from = 592  # 8 s before the trigger, 2 s after the push
    frame = fine_frame({
        "all": (0, 400, None),  # the overall rate window blurs the old dip into this breach
        "rs-4-a": (380, 400, 430),  # v1.8.0's pod, gone by 470: replaced
        "rs-6-a": (470, None, None),  # v1.7.0's, gone by 598
        "rs-7-a": (590, failing_from, None),  # the pushed release's
    })
    frame.loc[frame.index > T0 + timedelta(seconds=470), "rs-4-a"] = math.nan
    frame.loc[frame.index > T0 + timedelta(seconds=598), "rs-6-a"] = math.nan
    breach = incident_breach(frame, None, success_rate_min=0.99, p99_max_ms=500, reference=TRIGGER, gap_s=15)
    assert breach.at == T0 + timedelta(seconds=failing_from) and breach.dated_by == "rs-7-a"
    assert set(breach.series) == {"rs-7-a"}  # v1.8.0's old dip is another story
    assert breach.versions({"rs-7-a": "v1.5.1-errors", "rs-6-a": "v1.7.0"}) == {"v1.5.1-errors"}
    assert breach_start(frame["all"], 0.99, reference=TRIGGER) == T0 + timedelta(seconds=400)  # what misled it

    changes = [kubectl_push(375, 4, "v1.8.0", 3, "v1.5.1-errors"), kubectl_push(460, 6, "v1.7.0", 4, "v1.8.0"),
               kubectl_push(590, 7, "v1.5.1-errors", 6, "v1.7.0")]
    ranked = rank_changes(changes, breach.at, services=["veza-backend-api"], failing_replica_sets={"rs-7"},
                          reference=TRIGGER)
    assert ranked[0].change.version == "v1.5.1-errors"
    assert "the failing pods are its ReplicaSet's (rs-7, image v1.5.1-errors)" in ranked[0].evidence
    advice = suggest(ranked, breach.at)
    assert (advice.action, advice.to_revision) == ("rollback", 6)
    assert "roll back veza-backend-api to revision 6 (v1.7.0)" in advice.reason


def test_a_bad_push_seconds_after_a_good_release_is_the_one_rolled_back() -> None:
    """Two kubectl pushes 10 s apart, the bad one a release that already failed minutes before (the
    first incident drill pushed it, and it was rolled back). The same kind of change at nearly the
    same time: the breach is dated by the new pods' own series, and they are the second push's."""
    frame = fine_frame({"all": (0, 480, None),
                        "rs-7-old": (470, 480, 560),  # the first push of the bad release, rolled back at 560
                        "rs-9-a": (560, None, None),  # v1.7.0 again, until 590
                        "rs-10-a": (582, None, None),  # v1.6.0, pushed at 580, replaced at 598
                        "rs-7-new": (590, 592, None)})  # the bad release again: its ReplicaSet is reused
    frame.loc[frame.index > T0 + timedelta(seconds=560), "rs-7-old"] = math.nan
    frame.loc[frame.index > T0 + timedelta(seconds=590), "rs-9-a"] = math.nan
    frame.loc[frame.index > T0 + timedelta(seconds=598), "rs-10-a"] = math.nan
    for failing in ({"rs-7-new"}, set()):  # known failing by the pods' own test, or not yet
        breach = incident_breach(frame, None, success_rate_min=0.99, p99_max_ms=500, reference=TRIGGER, gap_s=15,
                                 failing=failing)
        assert breach.at == T0 + timedelta(seconds=592), failing
    # Its version's series would have joined both failures (gap 32 s) and dated it at 480.
    by_version = pd.DataFrame({"v1.5.1-errors": frame["rs-7-old"].combine_first(frame["rs-7-new"])})
    assert incident_breach(by_version, None, success_rate_min=0.99, p99_max_ms=500, reference=TRIGGER,
                           gap_s=40).at == T0 + timedelta(seconds=480)

    # The cluster keeps one ReplicaSet per template: rs-7, activated again, is revision 11 now.
    changes = [kubectl_push(560, 9, "v1.7.0", 7, "v1.5.1-errors"), kubectl_push(580, 10, "v1.6.0", 9, "v1.7.0"),
               kubectl_push(590, 11, "v1.5.1-errors", 10, "v1.6.0", "rs-7"),
               Change(at=T0 + timedelta(seconds=300), kind="deploy", service="veza-backend-api",
                      description="run r1 (failed): version v1.5.1-errors", version="v1.5.1-errors",
                      source="record sandbox/deploy-r1.ipynb")]
    ranked = rank_changes(changes, breach.at, services=["veza-backend-api"], failing_versions={"v1.5.1-errors"},
                          failing_replica_sets={"rs-7"}, reference=TRIGGER)
    assert [r.change.revision for r in ranked] == [11, 10, 9, None]
    assert ranked[0].score == 1.0 and ranked[1].score > 0.98  # a hair apart in time: the evidence decides
    assert suggest(ranked, breach.at).to_revision == 10
    # The old failed deploy's record names its version, not a ReplicaSet: not blamed by the version alone.
    assert "failing pods" not in ranked[-1].evidence
    # Without the ReplicaSets' evidence (no snapshot), the image version is what there is.
    by_image = rank_changes(changes, breach.at, failing_versions={"v1.5.1-errors"}, reference=TRIGGER)
    assert by_image[0].change.revision == 11
    assert "the failing pods run the image it introduced (v1.5.1-errors)" in by_image[0].evidence


def test_a_slow_version_dates_the_breach_by_its_p99() -> None:
    p99 = fine_frame({"all": (0, None, None), "slow-a": (580, 585, None)}).map(lambda v: v if v != v else
                                                                                (900.0 if v < 0.95 else 40.0))
    breach = incident_breach(None, p99, success_rate_min=0.99, p99_max_ms=500, reference=TRIGGER)
    assert breach.at == T0 + timedelta(seconds=585) and set(breach.series) == {"slow-a"}
    assert incident_breach(None, None, success_rate_min=0.99, p99_max_ms=500, reference=TRIGGER).at is None


def test_without_signal_data_changes_rank_against_the_trigger_and_say_so() -> None:
    change = deploy(1, "v1.5.1-errors", 4)
    ranked = rank_changes([change], None, reference=T0 + timedelta(seconds=300))
    assert "the incident was triggered (no signal data)" in ranked[0].evidence
    assert suggest(ranked, None).reason.startswith("the incident was triggered 60 s after v1.5.1-errors")


def test_no_change_suggests_a_restart_for_unhealthy_pods_or_nothing() -> None:
    assert suggest([], None, unhealthy_services=["veza-chat-server"]).action == "restart"
    nothing = suggest([], None, prior_incidents=["incident abc"])
    assert nothing.action == "none" and nothing.cites == ["incident abc"]


def test_timeline_orders_moments_and_offsets_them_from_the_trigger() -> None:
    timeline = Timeline()
    timeline.add(T0 + timedelta(seconds=90), "acknowledged")
    timeline.add(T0, "triggered")
    timeline.add("2026-12-01T13:59:20Z", "deploy: veza-backend-api", "evidence", "revision 4")
    timeline.add(None, "never")  # an unknown moment is not invented
    timeline.note_missing("golden signals: Prometheus unreachable")
    rows = timeline.rows(T0)
    assert [r["what"] for r in rows] == ["deploy: veza-backend-api", "triggered", "acknowledged"]
    assert [r["T"] for r in rows] == ["-40 s", "+0 s", "+90 s"]
    assert rows[0]["UTC"] == "2026-12-01 13:59:20Z"
    assert timeline.missing == ["golden signals: Prometheus unreachable"]


def _postmortem() -> PostMortem:
    timeline = Timeline()
    timeline.add(T0, "triggered")
    timeline.add(T0 + timedelta(seconds=42), "recovered")
    timeline.note_missing("previous-instance logs of pod-x")
    return PostMortem(incident_id="abc123", title="errors on the API | checkout", severity="P1", env="sandbox",
                      services=["veza-backend-api"], commander="alice", scribe="bob", communications="",
                      triggered_at=T0, timeline=timeline,
                      figures={"time_to_recover_s": 42.0, "failed_requests": 37, "time_to_acknowledge_s": 3.5,
                               "worst_success_rate": 0.915},
                      trigger="deploy of v1.5.1-errors", resolution="rolled back to revision 3")


def test_postmortem_holds_the_template_the_numbers_and_an_empty_action_table() -> None:
    text = render_markdown(_postmortem())
    for section in ("## Summary", "## Impact", "## Trigger", "## Root causes and contributing factors", "## Detection",
                    "## Resolution", "## Timeline (UTC)", "## Metrics", "## Lessons", "## Action items",
                    "## Supporting information"):
        assert section in text
    assert "| failed requests | 37 |" in text and "| duration (triggered → recovered) | 42.0 s |" in text
    assert "| lowest success rate | 91.5 % |" in text
    assert "| time to acknowledge | 3.5 | < 300 (guide §12.3) |" in text
    assert "| time to mitigate | not measured |" in text
    assert "errors on the API \\| checkout" not in text.split("\n")[0]  # the title line is plain text
    table = text.split("## Action items")[1].split("## Supporting")[0]
    assert "| action | type (prevent / detect / mitigate) | owner | priority | due | ticket |" in table
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len(rows) == 2  # header and separator: no action item is invented
    assert text.count(FOR_PEOPLE) >= 6
    assert "previous-instance logs of pod-x" in text


def test_postmortem_html_renders_the_tables_and_escapes_text() -> None:
    pm = _postmortem()
    pm.title = "<script>alert(1)</script>"
    page = render_html(render_markdown(pm), pm.title)
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page and "<td>37</td>" in page
    assert "<script>" not in page


def test_postmortem_masks_a_registered_secret_in_the_summary() -> None:
    from runbooks_lib.records.redaction import register_secret

    register_secret("s3cr3t-incident-value", persist=False)
    pm = _postmortem()
    pm.title = "db password s3cr3t-incident-value leaked"
    assert "s3cr3t-incident-value" not in render_markdown(pm)


def test_parameters_refuse_a_bad_severity_and_a_future_trigger() -> None:
    good = IncidentParams(service="veza-backend-api", severity="P1", summary="errors")
    assert abs((good.triggered - datetime.now(timezone.utc)).total_seconds()) < 5
    with pytest.raises(ValidationError, match="P0"):
        IncidentParams(service="veza-backend-api", severity="P5", summary="errors")
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    with pytest.raises(ValidationError, match="in the future"):
        IncidentParams(service="veza-backend-api", severity="P1", summary="errors", triggered_at=future)
    with pytest.raises(ValidationError, match="ISO 8601"):
        IncidentParams(service="veza-backend-api", severity="P1", summary="errors", triggered_at="yesterday")
    naive = IncidentParams(service="x", severity="P2", summary="abc", triggered_at="2026-01-02T03:04:05")
    assert naive.triggered_at == "2026-01-02T03:04:05Z"


class _Sink(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        _Sink.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_webhook_notice_is_short_slack_shaped_and_redacted() -> None:
    from runbooks_lib.platform.notify import Notice, WebhookNotifier
    from runbooks_lib.records.redaction import register_secret

    register_secret("hvs.notify-test-secret-0123456789", persist=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000/XXXXSECRETPATH"
        notifier = WebhookNotifier(url)
        delivery = notifier.send(Notice("P1", "token hvs.notify-test-secret-0123456789 in logs " + "x" * 400,
                                        "declared", "veza-backend-api", "sandbox", "sandbox/2026-12-01/r.ipynb"))
        assert delivery.delivered and delivery.target == f"http://127.0.0.1:{server.server_address[1]}/…"
        body = _Sink.received[-1]
        assert body["text"] == body["blocks"][0]["text"]["text"]
        assert body["text"].startswith("[P1] sandbox/veza-backend-api: token ******** in logs")
        assert "status: declared" in body["text"] and "record: sandbox/2026-12-01/r.ipynb" in body["text"]
        assert "hvs.notify" not in json.dumps(body) and len(body["text"]) < 320
    finally:
        server.shutdown()
    unreachable = WebhookNotifier(url, timeout_s=1).send(Notice("P3", "x", "resolved", "s", "e"))
    assert not unreachable.delivered and "unreachable" in (unreachable.error or "")


def test_replica_set_history_becomes_deploys_with_the_revision_they_replaced() -> None:
    from runbooks_lib.procedures.incident.snapshot import replica_set_changes

    def rs(name: str, revision: int, version: str, created: str, **annotations: str) -> dict:
        return {"metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": created,
                             "ownerReferences": [{"uid": "dep-uid", "controller": True}],
                             "annotations": {"deployment.kubernetes.io/revision": str(revision), **annotations}},
                "spec": {"template": {"spec": {"containers": [{"image": f"registry.veza.app/api:{version}"}]}}}}

    dep = {"metadata": {"name": "veza-backend-api", "uid": "dep-uid", "annotations": {"deployment.kubernetes.io/revision": "4"}},
           "spec": {"template": {"metadata": {"labels": {"app": "veza-backend-api"}}}},
           "status": {"conditions": [{"type": "Progressing", "reason": "NewReplicaSetAvailable",
                                      "lastUpdateTime": "2026-12-01T14:00:30Z"}]}}
    sets = [rs("a", 3, "v1.5.0", "2026-12-01T13:00:00Z"),
            rs("b", 4, "v1.5.1-errors", "2026-12-01T13:30:00Z", **{"deployment.kubernetes.io/revision-history": "2"})]
    pods = [{"metadata": {"creationTimestamp": "2026-12-01T14:00:05Z", "ownerReferences": [{"uid": "uid-b"}]}}]
    changes = {c.revision: c for c in replica_set_changes([dep], sets, T0 - timedelta(hours=2), pods)}
    reused = changes[4]
    assert reused.at == T0 + timedelta(seconds=5)  # a reused template went live with its pods, not at its creation
    assert (reused.previous_revision, reused.previous_version, reused.version) == (3, "v1.5.0", "v1.5.1-errors")
    assert reused.completed_at == T0 + timedelta(seconds=30)
    assert changes[3].at == T0 - timedelta(hours=1) and changes[3].previous_revision is None
    assert replica_set_changes([dep], sets, T0 + timedelta(minutes=1), pods) == []


def test_a_plain_papermill_runs_postmortem_lands_where_the_seal_puts_its_record(tmp_path, monkeypatch) -> None:
    """Without `runbook run` the kernel does not know the record's name: the draft goes where
    `runbook records seal` will copy the record, so the two are sealed together."""
    import nbformat

    from runbooks_lib.run.context import SUMMARY_MIME, RunContext
    from runbooks_lib.procedures.incident.response import postmortem_paths
    from runbooks_lib.records.ledger import attachments_of
    from runbooks_lib.records.seal import _canonical_place

    monkeypatch.delenv("RUNBOOK_RECORD", raising=False)
    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", str(tmp_path / "records"))
    monkeypatch.setenv("RUNBOOKS_FINGERPRINTS", str(tmp_path / "fingerprints"))
    ctx = RunContext("incident_response", "sandbox", None, {"severity": "P2"}, home=tmp_path)
    md, page = postmortem_paths(ctx)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", data={SUMMARY_MIME: ctx.summary(), "text/plain": "x"})]
    nb.cells = [cell]
    elsewhere = tmp_path / "out.ipynb"
    nbformat.write(nb, str(elsewhere))
    target = _canonical_place(elsewhere, tmp_path / "records")
    md.parent.mkdir(parents=True)
    md.write_text("draft")
    page.write_text("<p>draft</p>")
    assert attachments_of(target) == [page, md]


def test_the_notice_target_comes_from_the_parameter_or_the_profile() -> None:
    from types import SimpleNamespace

    from pydantic import SecretStr

    from runbooks_lib.platform.notify import NoNotifier, WebhookNotifier, notifier_for

    with_hook = SimpleNamespace(notify=SimpleNamespace(webhook_url=SecretStr("http://127.0.0.1:9/hooks/incidents")))
    without = SimpleNamespace(notify=SimpleNamespace(webhook_url=None))
    assert isinstance(notifier_for("none", with_hook), NoNotifier)
    assert notifier_for("", with_hook).url == "http://127.0.0.1:9/hooks/incidents"
    assert isinstance(notifier_for(None, without), NoNotifier)
    assert isinstance(notifier_for("https://hooks.example/T/B/X", without), WebhookNotifier)
    with pytest.raises(ValidationError, match="webhook URL"):
        IncidentParams(service="x", severity="P2", summary="abc", notify="slack-channel")


def test_a_pod_that_is_gone_dates_nothing() -> None:
    """Back-to-back incidents: the last one's failing pod was rolled back 20 s before this page,
    within the slack that lets a breach end just before its page. Only the pods that run now date it."""
    frame = fine_frame({"all": (0, 560, None), "old-pod": (550, 560, 580), "new-pod": (590, 595, None)})
    frame.loc[frame.index > T0 + timedelta(seconds=580), "old-pod"] = math.nan
    anyone = incident_breach(frame, None, success_rate_min=0.99, p99_max_ms=500, reference=TRIGGER)
    assert anyone.at == T0 + timedelta(seconds=560) and anyone.dated_by == "old-pod"  # what misled it
    live = incident_breach(frame, None, success_rate_min=0.99, p99_max_ms=500, reference=TRIGGER,
                           alive={"new-pod"})
    assert live.at == T0 + timedelta(seconds=595) and live.dated_by == "new-pod" and set(live.series) == {"new-pod"}
