"""Delivery metrics: the figures agree with a hand count over generated records (no sandbox)."""
from __future__ import annotations

import statistics
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from runbooks_lib.procedures.delivery import commit_times, delivery_report, rollback_status
from runbooks_lib.procedures.delivery.bands import failure_rate_band, frequency_band, lead_time_band, recovery_band
from tests.generators.delivery import generate_history
from runbooks_lib.errors import ParameterError
from tests.generators.records import write_summary_record

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# A small history written by hand: (minutes after T0, runbook, service, outcome, parameters, figures, link to #).
# Commit times: each version is committed `lead` minutes before its deploy starts.
HISTORY: list[tuple[float, str, str, str, dict[str, Any], dict[str, Any], tuple[str, int] | None]] = [
    (0, "deploy", "api", "succeeded", {"version": "v1"}, {"time_to_healthy_s": 60.0}, None),        # 0 serving
    (90, "deploy", "api", "failed", {"version": "v2"}, {"rolled_back": True, "time_to_rollback_s": 40.0}, None),  # 1
    (200, "deploy", "web", "succeeded", {"version": "w1"}, {"time_to_healthy_s": 30.0}, None),      # 2 serving
    (300, "rollback", "web", "succeeded", {}, {"time_to_rollback_s": 25.0}, ("undoes", 2)),         # 3 undoes 2
    (400, "deploy", "web", "succeeded", {"version": "w2", "dry_run": True}, {}, None),              # 4 dry run
    (500, "deploy", "web", "refused", {"version": "w3"}, {}, None),                                 # 5 not run
    (600, "canary_promotion", "api", "promoted", {"version": "v3"}, {}, None),                      # 6 serving
    (700, "canary_promotion", "api", "aborted", {"version": "v4"}, {"time_to_abort_s": 12.5}, None),  # 7 rolled back
    (800, "deploy", "api", "failed", {"version": "v5"}, {}, None),                                  # 8 failed before serving
    (1500, "deploy", "web", "succeeded", {"version": "w4"}, {"time_to_healthy_s": 45.0}, None),     # 9 serving
    (1600, "rollback", "web", "failed", {}, {"blocked_by_migration": True}, ("undoes", 9)),         # 10 blocked
    (2000, "dr_drill", "api", "succeeded", {}, {"rto_s": 300.0, "rpo_s": 4.0}, None),               # 11 drill
    (2100, "rollback", "api", "succeeded", {"dry_run": True}, {}, ("undoes", 0)),                   # 12 dry run
]
LEAD_MINUTES = {"v1": 30, "v2": 20, "w1": 50, "w2": 10, "w3": 10, "v3": 120, "v4": 15, "v5": 5, "w4": 70}


@pytest.fixture
def hand_written(tmp_path: Path) -> tuple[Path, list[dict[str, Any]], dict[tuple[str, str], datetime]]:
    root = tmp_path / "records"
    summaries, records, commits = [], [], {}
    for number, (minutes, runbook, service, outcome, params, figures, link) in enumerate(HISTORY):
        started = T0 + timedelta(minutes=minutes)
        links = [{"relation": link[0], "record": records[link[1]]}] if link else []
        summary = {"runbook": runbook, "env": "production", "service": service, "run_id": f"run{number:04d}",
                   "parameters": params, "started": iso(started), "finished": iso(started + timedelta(minutes=5)),
                   "outcome": outcome, "figures": figures, "links": links, "verdicts": [], "notes": {}}
        records.append(write_summary_record(root, summary).relative_to(root).as_posix())
        summaries.append(summary)
        if "version" in params:
            commits[(service, params["version"])] = started - timedelta(minutes=LEAD_MINUTES[params["version"]])
    return root, summaries, commits


def test_the_four_keys_agree_with_a_hand_count(hand_written: Any) -> None:
    root, summaries, commits = hand_written
    report = delivery_report(env="production", root=root, commits=commits)
    figures = report.figures()

    # Deployments: deploy/canary records that ran and are not dry runs (#0,1,2,6,7,8,9).
    ran = [s for s in summaries if s["runbook"] in ("deploy", "canary_promotion")
           and s["outcome"] != "refused" and not s["parameters"].get("dry_run")]
    serving = [s for s in ran if s["outcome"] in ("succeeded", "promoted")]
    assert figures["deployments"] == len(ran) == 7

    # Frequency: serving deployments over the window first → last deployment (#0 → #9: 1500 min > 1 day).
    window_days = (moment(ran[-1]) - moment(ran[0])).total_seconds() / 86400
    assert figures["deploys_per_day"] == pytest.approx(len(serving) / window_days, abs=1e-3)

    # Lead time: serving = start + time_to_healthy_s, else finish; minus the commit time.
    def serving_at(s: dict[str, Any]) -> datetime:
        healthy = s["figures"].get("time_to_healthy_s")
        return moment(s) + timedelta(seconds=healthy) if healthy is not None else \
            datetime.fromisoformat(s["finished"].replace("Z", "+00:00"))
    leads = [(serving_at(s) - commits[(s["service"], s["parameters"]["version"])]).total_seconds() for s in serving]
    assert figures["lead_time_median_s"] == pytest.approx(statistics.median(leads), abs=0.05)

    # Change failures: #1 rolled back by the deploy, #7 canary aborted after serving, #2 and #9 undone
    # later by rollback records (#9's rollback was blocked by a migration: failed, not recovered).
    reached = serving + [s for s in ran if s["figures"].get("rolled_back") or "time_to_abort_s" in s["figures"]]
    undone = {link["record"] for s in summaries for link in s["links"]
              if link["relation"] == "undoes" and not s["parameters"].get("dry_run")}
    failed_serving = [s for s in serving if record(root, s) in undone]
    failed = len(failed_serving) + len(reached) - len(serving)
    assert (failed, len(reached)) == (4, 6)
    assert figures["change_failure_rate"] == pytest.approx(failed / len(reached), abs=1e-4)

    # Recovery: 40 s (auto rollback), 12.5 s (canary abort), 25 s (rollback #3); #9 not recovered.
    recoveries = [summaries[1]["figures"]["time_to_rollback_s"], summaries[7]["figures"]["time_to_abort_s"],
                  summaries[3]["figures"]["time_to_rollback_s"]]
    assert figures["recovery_median_s"] == pytest.approx(statistics.median(recoveries))
    assert figures["recovery_mean_s"] == pytest.approx(round(statistics.fmean(recoveries), 1))
    recovery = report.recovery_table().loc[("production", "web")]
    assert (recovery["failed changes"], recovery["recovered"], recovery["not recovered"]) == (2, 1, 1)

    # Operational: success rate, rollback times (auto + runbook), canary abort, the drill.
    assert figures["success_rate"] == pytest.approx(round(len(serving) / len(ran), 4))
    assert figures["rollback_median_s"] == pytest.approx(statistics.median([40.0, 25.0]))
    assert (figures["rollback_max_s"], figures["rollbacks_not_done"], figures["rollbacks_blocked_by_migration"]) == \
        (40.0, 1, 1)
    assert figures["canary_abort_median_s"] == 12.5
    assert (figures["rto_latest_s"], figures["rpo_latest_s"]) == (300.0, 4.0)
    rollbacks = report.rollback_table().loc[("all", "all")]
    assert (rollbacks["rollbacks"], rollbacks["automatic"], rollbacks["blocked by migration"]) == (3, 1, 1)


def moment(summary: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(summary["started"].replace("Z", "+00:00"))


def record(root: Path, summary: dict[str, Any]) -> str:
    [path] = root.rglob(f"*-{summary['run_id']}.ipynb")
    return path.relative_to(root).as_posix()


def test_the_window_and_the_service_filter(hand_written: Any) -> None:
    root, summaries, commits = hand_written
    # until excludes the later records, but a rollback after the window still marks #2 failed
    early = delivery_report(env="production", root=root, commits=commits, until=iso(T0 + timedelta(minutes=250)))
    assert [d.version for d in early.events.deployments] == ["v1", "v2", "w1"]
    assert [d.failed_change for d in early.events.deployments] == [False, True, True]
    web = delivery_report(env="production", service="web", root=root, commits=commits,
                          since=iso(T0), until=iso(T0 + timedelta(days=2)))
    assert {d.service for d in web.events.deployments} == {"web"} and web.window_days == 2
    assert web.figures()["deploys_per_day"] == pytest.approx(2 / 2)
    assert delivery_report(env="staging", root=root).figures()["deployments"] == 0
    with pytest.raises(ParameterError, match="until .* must be after since"):
        delivery_report(root=root, since=iso(T0), until=iso(T0 - timedelta(hours=1)))
    with pytest.raises(ParameterError, match="not a time"):
        delivery_report(root=root, since="last tuesday")


def test_without_commit_times_lead_time_is_unknown_and_said_so(hand_written: Any) -> None:
    root, _, _ = hand_written
    report = delivery_report(env="production", root=root, commits=None)
    assert report.figures()["lead_time_median_s"] is None
    assert "UNKNOWN" in report.lead_time_table().attrs["title"]
    assert "lead time is unknown" in report.assessment()
    assert report.overview().loc["lead time for changes (median)", "meets target"] == "unknown"


def test_a_generated_catalog_agrees_with_a_hand_count(tmp_path: Path) -> None:
    history = generate_history(tmp_path / "records", 300, seed=3)
    report = delivery_report(root=history.root, commits=history.commits)
    summaries = history.summaries
    ran = [s for s in summaries if s["runbook"] in ("deploy", "canary_promotion")
           and s["outcome"] not in ("refused",) and not s["parameters"].get("dry_run")]
    serving = [s for s in ran if s["outcome"] in ("succeeded", "promoted")]
    rolled = [s for s in ran if s["figures"].get("rolled_back") or
              (s["outcome"] == "aborted" and "time_to_abort_s" in s["figures"])]
    undone = {link["record"] for s in summaries for link in s["links"]
              if link["relation"] == "undoes" and s["runbook"] == "rollback"
              or link["relation"] == "fixes" and s in serving}
    by_path = {p.relative_to(history.root).as_posix(): s for p, s in zip(history.paths, summaries)}
    failed_serving = [r for r in undone if by_path[r] in serving]
    assert rolled and failed_serving, "the seed must give both kinds of failed change"
    figures = report.figures()
    assert figures["deployments"] == len(ran)
    assert figures["change_failure_rate"] == pytest.approx(
        (len(rolled) + len(failed_serving)) / (len(serving) + len(rolled)), abs=1e-4)
    assert figures["success_rate"] == pytest.approx(len(serving) / len(ran), abs=1e-4)
    aborts = [s["figures"]["time_to_abort_s"] for s in summaries if s["runbook"] == "canary_promotion"
              and s["outcome"] == "aborted" and "time_to_abort_s" in s["figures"]]
    assert figures["canary_abort_median_s"] == pytest.approx(statistics.median(aborts))
    drills = [s for s in summaries if s["runbook"] == "dr_drill" and s["outcome"] != "refused"]
    assert figures["rto_latest_s"] == drills[-1]["figures"]["rto_s"]
    # per-service rows add up to the whole
    table = report.success_table()
    assert table.drop(index=("all", "all"))["attempted"].sum() == table.loc[("all", "all"), "attempted"] == len(ran)


def test_every_table_and_plot_renders_on_an_empty_and_a_full_catalog(tmp_path: Path) -> None:
    from runbooks_lib.procedures.delivery import plots

    history = generate_history(tmp_path / "full", 120, seed=5)
    (tmp_path / "empty").mkdir()
    for report in (delivery_report(root=history.root, commits=history.commits), delivery_report(root=tmp_path / "empty")):
        for name in report.TABLES:
            assert report.titled(name).title
        for draw in (plots.plot_frequency, plots.plot_lead_time, plots.plot_change_failure, plots.plot_recovery,
                     plots.plot_success, plots.plot_rollbacks, plots.plot_canary_aborts, plots.plot_drills):
            assert draw(report).axes
        assert "deployment frequency" in report.assessment()


def test_rollback_status_has_a_hook_for_migration_blocked_rollbacks() -> None:
    assert rollback_status({"outcome": "succeeded"}) == "succeeded"
    assert rollback_status({"outcome": "refused"}) == "refused"
    assert rollback_status({"outcome": "rejected"}) == "refused"
    assert rollback_status({"outcome": "blocked"}) == "blocked by migration"
    assert rollback_status({"outcome": "failed", "figures": {"blocked_by_migration": True}}) == "blocked by migration"
    assert rollback_status({"outcome": "refused", "notes": {"migration_guard": "contract step applied"}}) == \
        "blocked by migration"


def test_a_rollback_blocked_by_a_migration_note_reaches_the_figures_through_the_catalog(tmp_path: Path) -> None:
    root = tmp_path / "records"
    base = {"env": "production", "service": "api", "parameters": {}, "figures": {}, "links": [], "verdicts": []}
    deploy = write_summary_record(root, {**base, "runbook": "deploy", "run_id": "d1", "outcome": "succeeded",
                                         "parameters": {"version": "v9"}, "started": iso(T0),
                                         "finished": iso(T0 + timedelta(minutes=3)), "notes": {}})
    write_summary_record(root, {**base, "runbook": "rollback", "run_id": "r1", "outcome": "refused",
                                "started": iso(T0 + timedelta(hours=1)), "finished": iso(T0 + timedelta(hours=1)),
                                "links": [{"relation": "undoes", "record": deploy.relative_to(root).as_posix()}],
                                "notes": {"migration": "0042 drops a column the previous version reads"}})
    report = delivery_report(root=root)
    assert report.figures()["rollbacks_blocked_by_migration"] == 1
    [failed] = report.events.deployments
    assert failed.failed_change and failed.recovery_s is None and "blocked by migration" in failed.failure


def test_dora_2024_bands_at_their_bounds() -> None:
    assert [frequency_band(x) for x in (3, 1, 1 / 7, 1 / 30, 1 / 182, 1 / 400, None)] == \
        ["elite", "high", "high", "medium", "low", "below low", "unknown"]
    day = 86400
    assert [lead_time_band(x) for x in (600, day, 7 * day, 30 * day, 200 * day)] == \
        ["elite", "high", "medium", "low", "below low"]
    assert [failure_rate_band(x) for x in (0.0, 0.07, 0.12, 0.18, 0.5)] == ["elite", "elite", "medium", "high", "low"]
    assert [recovery_band(x) for x in (120, 3600, 2 * day, 40 * day)] == ["elite", "high", "low", "below low"]


def test_the_sandbox_image_catalog_gives_every_version_a_commit_time() -> None:
    from runbooks_sandbox.workload.catalog import load_image_catalog

    raw = yaml.safe_load((REPO / "parameters" / "sandbox.yaml").read_text())
    times = commit_times(SimpleNamespace(sandbox=raw["sandbox"]))  # type: ignore[arg-type]
    assert times is not None
    for service, versions in raw["sandbox"]["images"].items():
        for version in versions:
            assert times[(service, version)].tzinfo is not None
    assert times[("veza-backend-api", "v1.4.0")] < times[("veza-backend-api", "v1.6.0")]
    assert load_image_catalog(REPO / "parameters" / "sandbox.yaml").images["veza-frontend"]["v1.6.0"].commit_time
    assert commit_times(SimpleNamespace(sandbox=None)) is None  # type: ignore[arg-type]


def test_the_backups_group_counts_proofs_and_shows_the_restore_trend() -> None:
    """Issue 28: proven fraction, age of the newest proof against the interval, restore seconds drill by drill."""
    from datetime import datetime, timedelta, timezone

    from runbooks_lib.procedures.delivery.backups import backups_table, proofs_of
    from runbooks_lib.procedures.delivery.events import DrillEvent
    from runbooks_lib.procedures.dr.inventory import BackupEntry
    from runbooks_lib.procedures.dr.proof import Proof, Stamp

    now = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)

    def entry(name: str, proven_days_ago: float | None, problem: str = "") -> BackupEntry:
        stamp = None if proven_days_ago is None else Stamp(
            name, "d" * 64, f"run-{name}", "dr_drill", "restore", (now - timedelta(days=proven_days_ago)).isoformat(),
            4, ("row counts per table",), 3.0, 100)
        return BackupEntry(name, now - timedelta(days=50), 1000, "v1", Proof(name, stamp), problem)

    entries = [entry("a", 40), entry("b", None), entry("c", 35), entry("d", 1, problem="its dump is missing")]
    proofs = proofs_of(entries, interval_s=31 * 86400)
    assert (proofs.stored, proofs.proven, proofs.proven_fraction) == (4, 2, 0.5)
    assert proofs.newest_proof_run == "run-c" and proofs.newest_proof_age_s(now) == 35 * 86400
    drills = [DrillEvent(f"r{i}", "sandbox", "veza_db", now - timedelta(days=10 - i), "succeeded", 5.0, 1.0, restore_s)
              for i, restore_s in enumerate((2.0, None, 3.5))]
    table = backups_table(proofs, drills, now)
    assert table.loc["backups proven by a restore", "value"] == "2 of 4 (50 %)"
    assert table.loc["age of the newest proof", "meets target"] == "NO"  # 35 days > 31
    trend = [row for name, row in table.iterrows() if name.startswith("restore, drill of")]
    assert [r["value"] for r in trend] == ["2.0 s", "3.5 s"] and trend[1]["detail"] == "+1.5 s vs the drill before"
    fresh = proofs_of([entry("e", 2)], interval_s=31 * 86400)
    assert backups_table(fresh, [], now).loc["age of the newest proof", "meets target"] == "yes"
