"""The ``runbook`` command: a thin adapter over the Python API (papermill's CLI is the model).

Subcommands from other packages plug in through the ``runbook.commands`` entry point group
(``runbook sandbox ...`` comes from runbooks_sandbox), so runbooks_lib never imports them.
"""
from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path

import click

from .errors import RunbookError

__all__ = ["main", "cli"]

PLUGIN_GROUP = "runbook.commands"


class _PluginGroup(click.Group):
    """A group whose extra commands are loaded from entry points only when asked for."""

    def _plugins(self) -> dict:
        return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        plugin = self._plugins().get(name)
        if plugin is None:
            return None
        try:
            return plugin.load()
        except (ImportError, AttributeError) as e:
            problem = f"the {name!r} commands could not be loaded: {e}"

            # Help must still list the other commands; using this one says what is wrong.
            @click.command(name, help=f"(unavailable: {problem})", context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...]) -> None:
                raise click.ClickException(problem)

            return unavailable


@click.group(cls=_PluginGroup)
def cli() -> None:
    """Veza runbooks: run, record and drill operational procedures."""


@cli.command("run")
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option("--env", "env", required=True, help="Profile name: sandbox, staging, production...")
@click.option("-p", "--parameter", "parameters", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A runbook parameter; converted to the type the notebook declares.")
@click.option("-f", "--parameters-file", "param_file", type=click.Path(path_type=Path),
              help="YAML file of parameters (for lists and mappings).")
@click.option("--dry-run", is_flag=True, help="Run every change with the API server's dryRun=All.")
def run_command(notebook: Path, env: str, parameters: tuple, param_file: Path | None, dry_run: bool) -> None:
    """Execute NOTEBOOK against ENV and keep the executed notebook as the record.

    Exit codes: 0 done, 1 the runbook failed (record written), 2 bad parameters (nothing
    changed), 3 awaiting approval, 4 refused by a guard (wrong cluster, lock held).
    """
    from .run.runner import run_notebook

    _know_profile_secrets(env)
    result = run_notebook(notebook, env, list(parameters), param_file, dry_run=dry_run)
    outcome = (result.summary or {}).get("outcome", "no summary")
    click.echo(f"record: {result.record}")
    if result.html:
        click.echo(f"html: {result.html}")
    if result.published:
        click.echo(f"published to: {result.published}")
    if result.seal_refusal:
        click.echo(f"NOT SEALED: {result.seal_refusal}", err=True)
    click.echo(f"outcome: {outcome}")
    if result.summary and result.summary.get("failed_step"):
        click.echo(f"failed step: {result.summary['failed_step']}: {result.summary.get('error')}")
    sys.exit(result.exit_code)


def _know_profile_secrets(env: str) -> None:
    """This process masks the profile's secrets in what it prints, as the run's kernel does (the
    runner keys and anchors the ledger for the run's env, for a resume too). Nothing is written
    here: the run may yet be refused (a missing parameter), and a refused run leaves no trace; the
    kernel's start() persists the fingerprints the seal scans with."""
    from .config.profiles import load_profile
    from .records.redaction import register_profile_secrets

    try:
        register_profile_secrets(load_profile(env), persist=False)
    except RunbookError:
        pass  # an unknown env or a broken profile: run_notebook refuses it and says why


def _ledger_trust(env: str) -> None:
    """The profile's Vault transit key and Vault KV anchor for the ledger, when it names them
    (records.trust cannot reach Vault itself: platform/ talks to Vault)."""
    from .config.profiles import load_profile
    from .platform.vault import TransitLedgerKey, Vault, VaultHeadAnchor
    from .records.trust import use_anchors, use_ledger_key

    profile = load_profile(env)
    vault = Vault(profile.vault)
    if profile.records.ledger_transit_key:
        use_ledger_key(TransitLedgerKey(vault, profile.records.ledger_transit_key))
    if profile.records.ledger_head_path:
        use_anchors([VaultHeadAnchor(vault, profile.records.ledger_head_path)])


def _report(result: "object") -> None:
    """What `runbook run` and `runbook resume` print about a run, then its exit code."""
    summary = getattr(result, "summary", None) or {}
    click.echo(f"record: {result.record}")  # type: ignore[attr-defined]
    if getattr(result, "html", None):
        click.echo(f"html: {result.html}")  # type: ignore[attr-defined]
    if getattr(result, "published", None):
        click.echo(f"published to: {result.published}")  # type: ignore[attr-defined]
    if getattr(result, "seal_refusal", None):
        click.echo(f"NOT SEALED: {result.seal_refusal}", err=True)  # type: ignore[attr-defined]
    click.echo(f"outcome: {summary.get('outcome', 'no summary')}")
    if summary.get("failed_step"):
        click.echo(f"failed step: {summary['failed_step']}: {summary.get('error')}")
    sys.exit(result.exit_code)  # type: ignore[attr-defined]


@cli.command("approve")
@click.argument("run_id")
@click.option("--as", "approver", default=None, metavar="NAME",
              help="Only a check: the name of the person whose Vault login VAULT_TOKEN is (refused if it is not).")
@click.option("--reason", default="", help="Why, for the record.")
def approve_command(run_id: str, approver: str | None, reason: str) -> None:
    """Approve the gate run RUN_ID stopped at (exit 3); `runbook resume RUN_ID` then continues it.

    The approver is whoever the Vault token belongs to (VAULT_TOKEN: your own login; in the
    sandbox, `runbook sandbox login NAME`), never a typed name. Where the profile requires four
    eyes, the run's own operator cannot approve (exit 4). The approval signs the change's digest
    with Vault's approvals key; it is journaled and chained into the ledger, and expires after the
    profile's approvals.expires_after_s.
    """
    from .run.approvals import approve, what_changes
    from .run.journal import find_journal

    approval = approve(run_id, approver, reason)
    change = what_changes(find_journal(run_id).entries(), approval.gate)
    click.echo(f"run {run_id}, gate {approval.gate}: {approval.describe()}; change {approval.digest}")
    if change:
        click.echo(f"the change approved (as the run showed it when it stopped):\n{change}")
    click.echo(f"next: runbook resume {run_id}")


@cli.command("resume")
@click.argument("run_id")
def resume_command(run_id: str) -> None:
    """Continue run RUN_ID (stopped at a gate, or failed) as a new run linked to it.

    Steps the run completed are replayed from its journal, not repeated, each after checking
    the cluster still matches what the step left; drift stops the resume (exit 4).
    """
    from .run.resume import resume_run

    _report(resume_run(run_id))


@cli.command("gameday")
@click.option("--env", "env", default="sandbox", show_default=True, help="Profile to drill against.")
@click.option("--scenarios", "scenarios_file", type=click.Path(path_type=Path), default=None,
              help="Scenario file (default parameters/gameday.yaml).")
def gameday_command(env: str, scenarios_file: Path | None) -> None:
    """Run the game day's scenarios and print one table; exit 1 if any ended unexpectedly."""
    from .procedures.gameday.gameday import failed_since, format_table, load_scenarios, run_gameday

    from .procedures.gameday.page import write_index

    results = run_gameday(env, load_scenarios(scenarios_file))
    click.echo("\n" + format_table(results))
    # The drill must leave the platform healthy: nothing may fail once the last scenario began.
    failed, total = failed_since(env, results[-1].started) if results and results[-1].started else (0, 0)
    click.echo(f"\nfailed requests since the last scenario started: {failed} of {total}")
    page = write_index(results, env, failed_requests=failed, requests=total)
    click.echo(f"page: {page.path}")
    sys.exit(0 if page.passed else 1)


@cli.command("schedule")
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option("--env", "env", required=True, help="Profile name: the cluster and namespace the runs target.")
@click.option("--cron", required=True, help="When to run, a cron expression: \"0 3 1 * *\" = 03:00 on the 1st.")
@click.option("-p", "--parameter", "parameters", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A runbook parameter for every run (checked against the notebook now).")
@click.option("--time-zone", default="Etc/UTC", show_default=True, help="Time zone of the cron expression.")
@click.option("--deadline", "deadline_s", type=int, default=3600, show_default=True,
              help="Seconds a run may take before Kubernetes stops it (activeDeadlineSeconds).")
@click.option("--name", default=None, help="CronJob name (default runbook-<notebook>-<env>).")
@click.option("--apply", "apply_it", is_flag=True, help="Create or update the CronJob in the profile's cluster.")
@click.option("--dry-run", is_flag=True, help="With --apply: the API server validates it (dryRun=All), stores nothing.")
def schedule_command(notebook: Path, env: str, cron: str, parameters: tuple, time_zone: str, deadline_s: int,
                     name: str | None, apply_it: bool, dry_run: bool) -> None:
    """Print (or --apply) a CronJob that runs NOTEBOOK headless in the cluster on a schedule.

    Each run is `runbook run NOTEBOOK --env ENV -p ...` in the project's runner image; its sealed
    record lands in the profile's records (RUNBOOKS_RECORDS_URL, else records.url). Run one now
    with `kubectl create job NAME --from=cronjob/<name>`.
    """
    import yaml

    from .run.schedule import apply_cronjob, runbook_cronjob

    if dry_run and not apply_it:
        raise click.UsageError("--dry-run goes with --apply")
    cronjob = runbook_cronjob(notebook, env, cron, list(parameters), time_zone=time_zone, deadline_s=deadline_s,
                              name=name)
    if not apply_it:
        click.echo(yaml.safe_dump(cronjob, sort_keys=False), nl=False)
        return
    outcome = apply_cronjob(cronjob, env, dry_run=dry_run)
    meta = cronjob["metadata"]
    click.echo(f"cronjob.batch/{meta['name']} {outcome}{' (server dry run)' if dry_run else ''} in {meta['namespace']}: "
               f"{cron} {time_zone}; run it now: kubectl -n {meta['namespace']} create job "
               f"{meta['name'][:40]}-now --from=cronjob/{meta['name']}")


@cli.group("backups")
def backups() -> None:
    """The backup store: every backup, and which ones a drill restored and proved."""


@backups.command("list")
@click.option("--env", "env", default="sandbox", show_default=True, help="Profile whose backup store to read.")
@click.option("--verify-files", is_flag=True, help="Also read every dump and check its sha256 (slow on big ones).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per backup.")
def backups_list_command(env: str, verify_files: bool, as_json: bool) -> None:
    """Each backup, newest first: size, age, encryption key version, and "proven at ... by run ..."
    (a valid stamp of a drill that restored it), "never restored", or NOT PROVEN with why. Read only."""
    import json

    from .config.clock import iso, utcnow
    from .config.profiles import load_profile
    from .procedures.dr.inventory import inventory_of_profile, inventory_table

    entries = inventory_of_profile(load_profile(env), verify_files=verify_files)
    now = utcnow()
    if as_json:
        for e in entries:
            stamp = e.proof.stamp
            click.echo(json.dumps({"backup": e.name, "taken_at": iso(e.taken_at), "age_s": e.age_s(now),
                                   "bytes": e.size, "key_version": e.key_version, "proven": e.proven,
                                   "proven_at": stamp.proven_at if stamp and e.proven else None,
                                   "run_id": stamp.run_id if stamp and e.proven else None, "status": e.status()}))
        return
    if not entries:
        click.echo("no backup stored")
        return
    click.echo(inventory_table(entries, now).to_string(index=False))
    proven = sum(e.proven for e in entries)
    click.echo(f"\n{len(entries)} backup(s), {proven} proven by a restore")


from .records.cli import records  # noqa: E402  (the records commands are part of the library)

cli.add_command(records)

from .procedures.judging.cli import judge  # noqa: E402  (runbook judge replay: the verdicts measured)

cli.add_command(judge)


def _skip_iri_grammar() -> None:
    """Keep jsonschema from building rfc3987-syntax's Lark grammar when nbformat imports it:
    1.5-5 s per command on this project's machines, for IRI formats no notebook schema uses.
    (The package is there only because JupyterLab's jupyter-events asks for jsonschema's
    format extras.) Only this command's process is affected, never a kernel or a library user."""
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    """Entry point: library errors become a one-line message and their exit code; everything the
    command prints is masked (records.terminal), as a run's kernel masks its outputs."""
    from .records.terminal import filter_process_output
    from .records.trust import set_provider

    filter_process_output()
    set_provider(_ledger_trust)
    _skip_iri_grammar()
    try:
        cli.main(args=argv, prog_name="runbook", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(2 if isinstance(e, click.UsageError) else 1)
    except RunbookError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
