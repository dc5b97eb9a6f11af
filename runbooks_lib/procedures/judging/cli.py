"""``runbook judge replay``: the recorded windows re-judged under other policies (judging/replay.py)."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from .sequential import VerdictPolicy

__all__ = ["judge"]


@click.group("judge")
def judge() -> None:
    """Measure the verdicts: how often they were wrong, how soon they decided."""


def load_policy(path: Path) -> "VerdictPolicy":
    """A policy file: YAML (or JSON) of VerdictPolicy's fields; the ones left out keep their defaults.
    A bad file is refused with the field and the reason, before any record is read."""
    import yaml
    from pydantic import ValidationError

    from .sequential import VerdictPolicy

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise click.BadParameter(f"{path}: {e}", param_hint="--policy") from e
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: a mapping of policy fields, not {type(data).__name__}", param_hint="--policy")
    try:
        return VerdictPolicy(**data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise click.BadParameter(f"{path}: {problems}", param_hint="--policy") from e


@judge.command("replay")
@click.option("--since", help="Runs started from then: 7d, 12h, 30m or an ISO date/time (UTC).")
@click.option("--until", help="Runs started before then: an ISO date/time (UTC); default now.")
@click.option("--policy", "policy_files", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="A policy file (YAML of VerdictPolicy's fields); repeat to compare several.")
@click.option("--horizon", "horizon_h", type=click.FloatRange(min=0, min_open=True), default=24.0, show_default=True,
              help="Hours after a verdict in which a rollback or an incident's blame makes it an escape.")
@click.option("--root", default=None, metavar="FOLDER", help="Records folder (default: RUNBOOKS_RECORDS_URL, else outputs/).")
def replay_command(since: str | None, until: str | None, policy_files: tuple[Path, ...], horizon_h: float,
                   root: str | None) -> None:
    """Re-judge every recorded window (canary steps, deploy analyses, rollback verifies) under each
    --policy and print, per policy, decisions changed, time to decision, escapes, false aborts and
    the verdicts against what happened next."""
    from ...records.catalog import Catalog, parse_since
    from ...records.ledger import records_root
    from .replay import format_reports, replay_judges

    try:
        start, end = parse_since(since), parse_since(until)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since/--until") from e
    if start and end and start >= end:
        raise click.BadParameter(f"--since {since} is not before --until {until}", param_hint="--since/--until")
    policies: dict[str, VerdictPolicy | None] = {"as recorded": None}
    for path in policy_files:
        policies[path.stem] = load_policy(path)
    rows = Catalog(Path(root) if root else records_root()).rows()
    reports = replay_judges(rows, policies, since=start, until=end, horizon=timedelta(hours=horizon_h))
    click.echo(format_reports(reports))
