"""The game day's verdict per scenario is computed from what happened: outcome and platform health."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from runbooks_lib.procedures.gameday.gameday import PlatformHealth, Scenario, ScenarioResult, format_table, load_scenarios


def result(outcome: str, healthy: bool | None, expect: str = "succeeded") -> ScenarioResult:
    scenario = Scenario(name="s", notebook="notebooks/rollback.ipynb", expect=expect)
    health = None if healthy is None else PlatformHealth(healthy, "ok" if healthy else "veza-backend-api: 7/90 requests failed")
    return ScenarioResult(scenario, outcome, None, None, None, health)


def test_a_success_that_leaves_users_failing_is_not_as_expected() -> None:
    assert result("succeeded", True).as_expected
    assert not result("succeeded", False).as_expected
    assert not result("succeeded", None).as_expected  # health unknown is not healthy
    assert not result("failed", True).as_expected
    assert result("failed", True, expect="failed").as_expected
    table = format_table([result("succeeded", False)], home=Path("/"))
    assert "UNHEALTHY: veza-backend-api: 7/90 requests failed" in table and "NO (platform unhealthy after)" in table


def test_the_shipped_game_day_ends_with_a_health_check_and_never_rolls_back_onto_a_bad_release() -> None:
    scenarios = load_scenarios()
    assert scenarios[-1].notebook == "notebooks/health_check.ipynb" and scenarios[-1].expect == "succeeded"
    assert all(s.healthy_after for s in scenarios)
    # A rollback expected to succeed never follows a failed deploy of the same service.
    last_deploy: dict[str, str] = {}
    for s in scenarios:
        service = s.parameters.get("service")
        if s.notebook.endswith("deploy.ipynb"):
            last_deploy[service] = s.expect
        if s.notebook.endswith("rollback.ipynb") and s.expect == "succeeded":
            assert last_deploy.get(service) == "succeeded", s.name


def _sealed_record(root: Path, name: str, *, with_plot: bool, postmortem: bool) -> Path:
    """A record as the runner leaves it: executed cells (a plot), sealed into the ledger with its HTML."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from runbooks_lib.records.seal import seal_record

    nb = new_notebook(cells=[new_code_cell("plot()")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if with_plot:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        nb.cells[0].outputs = [new_output("display_data", data={"image/png": base64.b64encode(buffer.getvalue()).decode(),
                                                                  "text/plain": "<Figure>"})]
    path = root / "sandbox" / "2026-12-01" / f"{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    if postmortem:
        path.with_name(f"{name}-postmortem.html").write_text("<p>post-mortem draft</p>")
    return seal_record(path, root).record


def test_the_index_page_links_every_record_shows_the_plots_and_the_ledger(tmp_path: Path, monkeypatch) -> None:
    import re
    from datetime import datetime, timedelta, timezone

    from runbooks_lib.procedures.gameday.page import write_index

    monkeypatch.setenv("RUNBOOKS_FINGERPRINTS", str(tmp_path / "fp"))
    root = tmp_path / "records"
    canary = _sealed_record(root, "canary_promotion-1", with_plot=True, postmortem=False)
    incident = _sealed_record(root, "incident_response-2", with_plot=True, postmortem=True)
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    results = [
        ScenarioResult(Scenario(name="Canary", notebook="notebooks/canary_promotion.ipynb", expect="promoted",
                                figure="decisions"), "promoted", 8, canary, None, PlatformHealth(True, "ok"),
                       t0, t0 + timedelta(seconds=40)),
        ScenarioResult(Scenario(name="Incident", notebook="notebooks/incident_response.ipynb"), "failed", None,
                       incident, "CheckFailed: still failing", PlatformHealth(True, "ok"),
                       t0 + timedelta(seconds=41), t0 + timedelta(seconds=90)),
    ]
    page = write_index(results, "sandbox", failed_requests=0, requests=1200, root=root)
    html = page.path.read_text()
    assert page.path == root / "gameday" / "2026-12-01" / "index.html" and not page.passed
    assert "1 scenario(s) did NOT end as expected" in html and "NO (expected succeeded)" in html
    assert "CheckFailed: still failing" in html and "decisions = 8" in html
    assert "2 sealed record(s) intact" in html
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert len(hrefs) == 3 and all((page.path.parent / href).resolve().is_file() for href in hrefs)
    assert any(href.endswith("incident_response-2-postmortem.html") for href in hrefs)
    assert html.count("data:image/png;base64,") == 1 + 2  # the timeline, and one plot from each record

    # A record changed after its seal: the page says the ledger has a problem, and the day did not pass.
    incident.write_text(incident.read_text().replace("plot()", "plot(1)"))
    results[1] = ScenarioResult(results[1].scenario, "succeeded", None, incident, None, PlatformHealth(True, "ok"),
                                results[1].started, results[1].ended)
    page = write_index(results, "sandbox", failed_requests=0, requests=1200, root=root)
    assert not page.passed and "1 problem(s)" in page.path.read_text()


def test_the_game_day_schedules_the_monthly_restore_test_as_a_cronjob() -> None:
    """Guide §10, restores tested monthly: `runbook schedule notebooks/dr_drill.ipynb ... -p scenario
    restore --apply` is among the game day's commands, with a monthly cron the schedule accepts."""
    from croniter import croniter

    commands = [c for s in load_scenarios() for c in s.before if c[:3] == ["runbook", "schedule", "notebooks/dr_drill.ipynb"]]
    assert len(commands) == 1
    command = commands[0]
    pairs = [tuple(command[i + 1:i + 3]) for i, word in enumerate(command) if word == "-p"]
    assert pairs == [("scenario", "restore")] and "--apply" in command
    cron = command[command.index("--cron") + 1]
    schedule = croniter(cron, datetime(2026, 12, 7, tzinfo=timezone.utc))
    runs = [schedule.get_next(datetime) for _ in range(4)]
    assert all(r.day == 1 for r in runs) and all(28 <= (b - a).days <= 31 for a, b in zip(runs, runs[1:]))
    # The parameters are the notebook's own (what `runbook schedule` checks before writing anything).
    from runbooks_lib.run.runner import notebook_parameters, resolve_parameters

    notebook = Path(__file__).parents[1] / "notebooks" / "dr_drill.ipynb"
    resolve_parameters(notebook_parameters(notebook), [*pairs, ("env", "sandbox")], {})
