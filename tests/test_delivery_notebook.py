"""notebooks/delivery_metrics.ipynb headless, as on-call runs it: `runbook run ... --env sandbox`.

It only reads records, so no live sandbox is needed: the sandbox profile's live values come from a
stand-in .sandbox/env (nothing listens there; the run never checks the cluster), the records from a
temporary folder of generated records (RUNBOOKS_RECORDS_URL), the commit times from the real
parameters/sandbox.yaml.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runbooks_lib.procedures.delivery import DeliveryParams, commit_times, delivery_report
from tests.generators.delivery import generate_history
from runbooks_lib.run.runner import read_summary

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(300)


def test_the_notebook_runs_headless_and_records_the_report_figures(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(REPO / "parameters", home / "parameters")
    sandbox_env = tmp_path / "sandbox.env"
    sandbox_env.write_text("KUBECONFIG=/nonexistent\nCLUSTER_UID=uid\nVAULT_ADDR=http://127.0.0.1:1\n"
                           "VAULT_TOKEN=dev-token-not-a-secret\nPROMETHEUS_URL=http://127.0.0.1:1\n")
    records = tmp_path / "records"
    catalog = yaml.safe_load((REPO / "parameters" / "sandbox.yaml").read_text())["sandbox"]
    commits = commit_times(type("P", (), {"sandbox": catalog})())  # type: ignore[arg-type]
    history = generate_history(records, 60, seed=11, envs=("sandbox", "staging"), commits=commits)
    first, last = history.summaries[0]["started"], history.summaries[-1]["started"]
    since, until = first[:10], last[:10] + "T23:59:59Z"
    expected = delivery_report(env="sandbox", since=since, until=until, commits=commits, root=records).figures()
    assert expected["deployments"] and expected["lead_time_median_s"] is not None

    env = dict(os.environ, RUNBOOKS_HOME=str(home), RUNBOOKS_SANDBOX_ENV=str(sandbox_env),
               RUNBOOKS_RECORDS_URL=str(records), IPYTHONDIR=str(home / ".ipython"),
               JUPYTER_CONFIG_DIR=str(home / ".jupyter"), JUPYTER_RUNTIME_DIR=str(home / ".jupyter-runtime"))
    result = subprocess.run(
        [sys.executable, "-m", "runbooks_lib.cli", "run", str(REPO / "notebooks" / "delivery_metrics.ipynb"),
         "--env", "sandbox", "-p", "since", since, "-p", "until", until],
        capture_output=True, text=True, env=env, timeout=240, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [record] = sorted(records.rglob("delivery_metrics-*.ipynb"))
    summary = read_summary(record)
    assert summary["outcome"] == "succeeded" and summary["runbook"] == "delivery_metrics"
    # "How good are our judges": the recorded verdicts against what happened next (judging/replay.py).
    from runbooks_lib.procedures.judging.replay import replay_judges
    from runbooks_lib.procedures.delivery.report import parse_moment
    from runbooks_lib.records.catalog import Catalog, RecordFilter

    [judges] = replay_judges(Catalog(records).rows(RecordFilter(env="sandbox")), {"as recorded": None},
                             since=parse_moment(since), until=parse_moment(until))
    assert judges.verdicts and judges.escapes + judges.false_aborts > 0  # the generated history has both kinds
    # No backup store in this profile (nothing listens): the backups group is unknown, saying why.
    assert summary["figures"] == {**expected, "judge_false_aborts": judges.false_aborts,
                                  "judge_escapes": judges.escapes, "judge_median_decision_s": judges.median_decision_s,
                                  "backups_proven_fraction": None, "newest_proof_age_s": None}
    assert [s["name"] for s in summary["steps"]] == ["Read the records", "Read the backup store", "Verdict"]
    text = record.read_text()
    assert text.count('"image/png"') == 10  # a plot per figure group, the judges' and the backups'
    for title in ("How good are our judges", "Deployment frequency", "Lead time for changes", "Change failure rate",
                  "recovery time", "Deployment success rate", "Rollback times", "Canary abort times", "DR drills",
                  "Backups: proven by restores", "? backups: unknown (profile sandbox names no backup storage"):
        assert title in text


def test_bad_parameters_are_refused_before_any_record_is_read() -> None:
    assert DeliveryParams(since="30d", until="2026-12-01T00:00Z").since == "30d"
    with pytest.raises(ValueError, match="not a time: 'last tuesday'"):
        DeliveryParams(since="last tuesday")
    with pytest.raises(ValueError, match="extra"):
        DeliveryParams(sinse="30d")  # type: ignore[call-arg]
