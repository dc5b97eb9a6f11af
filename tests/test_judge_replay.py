"""`runbook judge replay` over synthetic records: a known escape and a known false abort are
counted, and another policy's re-judging of the same looks changes what it should."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from runbooks_lib.cli import cli
from runbooks_lib.procedures.judging.replay import judged_windows, replay_judges, what_happened_next
from runbooks_lib.procedures.judging.sequential import VerdictPolicy
from runbooks_lib.records.catalog import Catalog
from tests.generators.records import write_summary_record

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
SERVICE = "veza-backend-api"
CLEAN = [[float(t), 10.0 * t, 0.0, 40.0] for t in range(1, 13)]  # 120 clean requests by 12 s: a pass
ERRORING = [[5.0, 20.0, 2.0, 40.0], [10.0, 40.0, 3.0, 40.0]]  # 92.5 %: fails a 99 % SLO


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _record(root: Path, run_id: str, runbook: str, hours: float, outcome: str, *, version: str | None = None,
            judged: list | None = None, links: list | None = None, verdicts: list | None = None) -> str:
    started = T0 + timedelta(hours=hours)
    summary = {"version": 1, "runbook": runbook, "env": "sandbox", "service": SERVICE, "run_id": run_id,
               "parameters": {"version": version} if version else {}, "started": _iso(started),
               "finished": _iso(started + timedelta(seconds=60)), "outcome": outcome, "steps": [], "figures": {},
               "links": links or [], "verdicts": verdicts or [], "judged": judged or []}
    return write_summary_record(root, summary).relative_to(root).as_posix()


def _window(kind: str, version: str, verdict: str, looks: list, max_s: float = 30.0) -> dict:
    return {"kind": kind, "service": SERVICE, "version": version, "verdict": verdict, "ended_by": "decision",
            "decided_after_s": looks[-1][0], "max_s": max_s, "looks": looks}


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """v1.7.0 passes its analysis and is rolled back an hour later (an escape); v1.8.0's canary is
    aborted, then the same version is deployed and stays (a false abort); v1.9.0 passes and an
    incident names it bad (an escape); v1.10.0's verify passes and nothing follows (right)."""
    d1 = _record(tmp_path, "d1", "deploy", 0, "succeeded", version="v1.7.0",
                 judged=[_window("deploy analysis", "v1.7.0", "pass", CLEAN)])
    _record(tmp_path, "r1", "rollback", 1, "succeeded", links=[{"relation": "undoes", "record": d1}])
    _record(tmp_path, "c1", "canary_promotion", 2, "aborted", version="v1.8.0",
            judged=[_window("canary", "v1.8.0", "fail", ERRORING, max_s=10.0)])
    _record(tmp_path, "d2", "deploy", 3, "succeeded", version="v1.8.0",
            judged=[_window("deploy analysis", "v1.8.0", "pass", CLEAN)])
    _record(tmp_path, "d3", "deploy", 5, "succeeded", version="v1.9.0",
            judged=[_window("deploy analysis", "v1.9.0", "pass", CLEAN)])
    _record(tmp_path, "i1", "incident_response", 6, "succeeded",
            verdicts=[{"service": SERVICE, "version": "v1.9.0", "verdict": "bad", "why": "its pods failed the SLOs"}])
    return tmp_path


def test_what_happened_next_names_the_escapes_and_the_false_abort(history: Path) -> None:
    rows = Catalog(history).rows()
    truths = {w.version: what_happened_next(w, rows, timedelta(hours=24)) for w in judged_windows(rows)}
    assert truths["v1.7.0"][0] == "bad" and "rolled back by" in truths["v1.7.0"][1]
    assert truths["v1.8.0"][0] == "good"  # both windows: the abort was wrong, the later pass right
    assert truths["v1.9.0"][0] == "bad" and "named bad by incident_response" in truths["v1.9.0"][1]
    # Beyond the horizon a rollback is no longer this release's doing.
    late = {w.version: what_happened_next(w, rows, timedelta(minutes=30))[0] for w in judged_windows(rows)}
    assert late["v1.7.0"] == "good" and late["v1.9.0"] == "good"


def test_the_recorded_verdicts_count_two_escapes_and_one_false_abort(history: Path) -> None:
    lenient = VerdictPolicy(success_rate_min=0.9, bad_error_rate=0.3)
    recorded, default, relaxed = replay_judges(Catalog(history).rows(), {"as recorded": None,
                                                                         "default": VerdictPolicy(),
                                                                         "lenient": lenient})
    assert (len(recorded.verdicts), recorded.escapes, recorded.false_aborts, recorded.changed) == (4, 2, 1, 0)
    assert recorded.confusion()[("pass", "bad")] == 2 and recorded.confusion()[("fail", "good")] == 1
    # The default policy re-judges the same looks alike: 112 clean requests pass at 12 s; the canary's
    # 3 errors in 40 end its 10 s window undecided and miss the 99 % SLO.
    assert (default.escapes, default.false_aborts, default.changed) == (2, 1, 0)
    assert default.median_decision_s == 12.0
    # A 90 % SLO would have promoted v1.8.0's canary: one decision changed, no false abort left.
    assert (relaxed.changed, relaxed.false_aborts, relaxed.escapes) == (1, 0, 2)


def test_a_stricter_policy_than_the_recording_is_reported_cut_short(history: Path) -> None:
    """The runs stopped looking at 120 clean requests (12 s); α = β = 0.1 % needs 168: undecided where
    the recording stops, judged on the SLOs there, and said so rather than counted as decided."""
    [strict] = replay_judges(Catalog(history).rows(), {"strict": VerdictPolicy(alpha=0.001, beta=0.001)})
    # The three clean windows; the canary's ran to its 10 s maximum: its end is the window's, not cut short.
    assert strict.cut_short == 3 and strict.changed == 0


def test_the_command_prints_the_table_per_policy(history: Path, tmp_path: Path) -> None:
    policy = tmp_path / "lenient.yaml"
    policy.write_text("success_rate_min: 0.9\nbad_error_rate: 0.3\n")
    result = CliRunner().invoke(cli, ["judge", "replay", "--root", str(history), "--since", "2026-11-01",
                                      "--until", "2026-11-03", "--policy", str(policy), "--horizon", "24"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["policy", "windows", "changed", "median", "s", "escapes", "false", "aborts", "cut", "short"]
    assert lines[1].split() == ["as", "recorded", "4", "0", "12", "2", "1", "0"]
    # At 30 % vs 10 % errors 19 clean requests rule the bad rate out; the p99 waits for 100: 10 s.
    assert lines[2].split() == ["lenient", "4", "1", "10", "2", "0", "0"]
    assert "as recorded: verdict vs what happened next" in result.output
    assert "pass" in result.output and "fail" in result.output
    outside = CliRunner().invoke(cli, ["judge", "replay", "--root", str(history), "--since", "2026-12-01"])
    assert outside.exit_code == 0 and "no judged window" in outside.output


@pytest.mark.parametrize("content, problem", [("alpha: 0.7\n", "alpha"), ("alfa: 0.01\n", "alfa"),
                                              ("- 1\n", "a mapping of policy fields")])
def test_a_bad_policy_file_is_refused_before_any_record_is_read(history: Path, tmp_path: Path, content: str,
                                                                 problem: str) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text(content)
    result = CliRunner().invoke(cli, ["judge", "replay", "--root", str(history / "nowhere"), "--policy", str(policy)])
    assert result.exit_code == 2 and problem in result.output and not (history / "nowhere").exists()


def test_since_after_until_is_refused(history: Path) -> None:
    result = CliRunner().invoke(cli, ["judge", "replay", "--root", str(history), "--since", "2026-11-03",
                                      "--until", "2026-11-01"])
    assert result.exit_code == 2 and "is not before --until" in result.output


def test_the_delivery_notebooks_judges_table_and_plot(history: Path) -> None:
    from runbooks_lib.procedures.judging.replay import judges_table, plot_judges

    [recorded] = replay_judges(Catalog(history).rows(), {"as recorded": None})
    table = judges_table(recorded)
    row = table.loc[SERVICE]
    assert (row["windows"], row["judged bad"], row["false aborts"], row["escapes"]) == (4, 1, 1, 2)
    assert row["median s to decision"] == 12.0 and row["decided by evidence %"] == 100
    figure = plot_judges(recorded)
    bars = figure.axes[0].patches
    assert [bar.get_height() for bar in bars] == [1, 2]  # false aborts, escapes
    empty = plot_judges(replay_judges([], {"as recorded": None})[0])
    assert "no judged window" in empty.axes[0].texts[0].get_text()


def test_a_pass_its_own_run_rolled_back_is_an_escape(tmp_path: Path) -> None:
    """A blue-green deploy whose analysis passed and whose monitoring then failed and flipped back."""
    started = T0
    summary = {"version": 1, "runbook": "deploy", "env": "sandbox", "service": SERVICE, "run_id": "bg1",
               "parameters": {"version": "v2.0.0"}, "started": _iso(started), "finished": _iso(started),
               "outcome": "failed", "steps": [], "figures": {"rolled_back": True}, "links": [], "verdicts": [],
               "judged": [_window("deploy analysis", "v2.0.0", "pass", CLEAN),
                          _window("deploy analysis", "v2.0.0", "fail", ERRORING, max_s=10.0)]}
    write_summary_record(tmp_path, summary)
    [report] = replay_judges(Catalog(tmp_path).rows(), {"as recorded": None})
    assert report.escapes == 1 and report.confusion()[("fail", "unknown")] == 1
