"""`runbook schedule`'s checks: bad input is refused before anything is written (no cluster needed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from runbooks_lib.errors import ParameterError
from runbooks_lib.run.schedule import cronjob_name, runbook_cronjob

REPO = Path(__file__).resolve().parents[1]
HEALTH = REPO / "notebooks" / "health_check.ipynb"


@pytest.mark.parametrize("parameters, cron, zone, message", [
    ([("windw_minutes", "2")], "@daily", "Etc/UTC", "unknown parameter(s) windw_minutes"),
    ([("window_minutes", "two")], "@daily", "Etc/UTC", "window_minutes"),
    ([], "0 3 1 *", "Etc/UTC", "is not a cron schedule"),
    ([], "61 3 1 * *", "Etc/UTC", "is not a cron schedule"),
    ([], "0 3 1 * *", "Mars/Olympus", "is not a time zone"),
])
def test_bad_input_is_refused_with_what_to_fix(parameters: list, cron: str, zone: str, message: str) -> None:
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        runbook_cronjob(HEALTH, "sandbox", cron, parameters, time_zone=zone, home=REPO)


def test_a_notebook_must_exist_and_be_part_of_the_project(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="no such notebook"):
        runbook_cronjob(REPO / "notebooks" / "nope.ipynb", "sandbox", "@daily", home=REPO)
    stray = tmp_path / "health_check.ipynb"
    stray.write_bytes(HEALTH.read_bytes())
    with pytest.raises(ParameterError, match="not part of the project"):
        runbook_cronjob(stray, "sandbox", "@daily", home=REPO)


def test_names_are_dns_labels_short_enough_for_their_jobs() -> None:
    assert cronjob_name(Path("notebooks/health_check.ipynb"), "sandbox") == "runbook-health-check-sandbox"
    long = cronjob_name(Path("notebooks/" + "disaster_recovery_drill_" * 4 + ".ipynb"), "production")
    assert len(long) <= 52 and not long.endswith("-")


def test_a_sandbox_job_keys_the_ledger_with_the_operator_s_key_file(project_copy: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's jobs run on this machine: they get the ledger key file the operator's
    `records verify` checks with (only its path, never its content)."""
    key = tmp_path / "keys" / "ledger.key"
    monkeypatch.setenv("RUNBOOKS_LEDGER_KEY", str(key))
    (project_copy / "notebooks").mkdir()
    notebook = project_copy / "notebooks" / HEALTH.name
    notebook.write_bytes(HEALTH.read_bytes())
    job = runbook_cronjob(notebook, "sandbox", "@daily", home=project_copy)
    [container] = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["RUNBOOKS_LEDGER_KEY"] == str(key.resolve())
    assert not key.exists()  # the CronJob names the file; nothing read or made here
