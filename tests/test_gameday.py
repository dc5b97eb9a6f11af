"""The game day's verdict per scenario is computed from what happened: outcome and platform health."""
from __future__ import annotations

from pathlib import Path

from runbooks_lib.gameday import PlatformHealth, Scenario, ScenarioResult, format_table, load_scenarios


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
