"""``runbook records list|show|verify|seal|export``: the catalog and the ledger from a shell."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

__all__ = ["records"]


def _root(root: str | None) -> Path:
    from .ledger import records_root

    return Path(root) if root else records_root()


_root_option = click.option("--root", "root", default=None, metavar="FOLDER",
                            help="Records folder (default: RUNBOOKS_RECORDS_URL, else outputs/).")


@click.group("records")
def records() -> None:
    """Find, verify, seal and export run records."""


@records.command("list")
@_root_option
@click.option("--env")
@click.option("--runbook")
@click.option("--service")
@click.option("--outcome")
@click.option("--since", help="7d, 12h, 30m, or an ISO date")
@click.option("--severity", help="Incidents of this severity (P0..P3).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
def list_command(root: str | None, env: str | None, runbook: str | None, service: str | None,
                 outcome: str | None, since: str | None, severity: str | None, as_json: bool) -> None:
    """Records, newest first."""
    from .catalog import Catalog, RecordFilter, parse_since

    where = RecordFilter(env=env, runbook=runbook, service=service, outcome=outcome, since=parse_since(since),
                         severity=severity)
    rows = Catalog(_root(root)).rows(where)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
        return
    if not rows:
        click.echo("no records")
        return
    click.echo(f"{'started (UTC)':24} {'run id':12} {'env':10} {'runbook':22} {'service':18} {'outcome':10} sealed")
    for r in rows:
        click.echo(f"{str(r.get('started') or '-'):24} {str(r.get('run_id') or '-'):12} {str(r.get('env') or '-'):10} "
                   f"{str(r.get('runbook') or '-'):22} {str(r.get('service') or '-'):18} {str(r.get('outcome')):10} "
                   f"{'yes' if r.get('sealed') else 'NO'}")


@records.command("show")
@_root_option
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
def show_command(root: str | None, run_id: str, as_json: bool) -> None:
    """One run's summary (RUN_ID or a unique prefix)."""
    from .summary import read_summary
    from .catalog import Catalog

    catalog = Catalog(_root(root))
    row = catalog.find(run_id)
    if row is None:
        raise click.ClickException(f"no single record with run id {run_id!r}")
    summary: dict[str, Any] = read_summary(catalog.root / row["record"]) or {}
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    click.echo(f"{summary.get('runbook')} on {summary.get('env')}: {summary.get('outcome')}")
    click.echo(f"record: {catalog.root / row['record']}  (sealed: {'yes' if row['sealed'] else 'NO'})")
    for key in ("service", "operator", "started", "finished", "duration_s", "git_sha", "failed_step", "error"):
        if summary.get(key) is not None:
            click.echo(f"{key}: {summary[key]}")
    for step in summary.get("steps") or []:
        click.echo(f"  {'✓' if step.get('outcome') == 'succeeded' else '✗'} {step.get('name')}: "
                   f"{step.get('outcome')} in {step.get('duration_s')} s")
    for name, value in (summary.get("figures") or {}).items():
        click.echo(f"  {name} = {value}")


@records.command("verify")
@_root_option
@click.option("--expect-head", help="The ledger's last hash as published elsewhere.")
@click.option("--env", default=None, help="Also compare with this profile's anchors: its archive (records.url) "
                                           "and, when the profile names them, Vault's key and ledger head.")
@click.option("--anchor", "anchor_urls", multiple=True, metavar="URL",
              help="An archive whose ledgers/<writer>.head.json to compare the chain with (repeatable).")
def verify_command(root: str | None, expect_head: str | None, env: str | None, anchor_urls: tuple[str, ...]) -> None:
    """Check the ledgers' chains, MACs and anchored heads and every sealed record; exit 1 naming each problem."""
    from .archive import archive_url
    from .ledger import check_root, ledgers_of
    from .trust import ArchiveAnchor, anchors, configure_for

    configure_for(env)
    archive = archive_url(env)
    extra = [ArchiveAnchor(url) for url in (*anchor_urls, *([archive] if archive and not root else []))]
    folder = _root(root)
    report = check_root(folder, expect_head, [*anchors(), *extra])
    for notice in report.notices:
        click.echo(f"! {notice}")
    if report.problems:
        for problem in report.problems:
            click.echo(f"✗ {problem}")
        click.echo(f"{len(report.problems)} problem(s) in {folder}", err=True)
        sys.exit(1)
    ledgers = ledgers_of(folder)
    count = sum(len(ledger.entries()) for ledger in ledgers)
    heads = "; ".join(f"{ledger.path.name} head {ledger.head}" for ledger in ledgers)
    click.echo(f"✓ {count} sealed record(s) intact; {heads}")


@records.command("seal")
@_root_option
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mask-parameters", is_flag=True,
              help="First mask secret-named parameters papermill injected in clear (papermill #271).")
@click.option("--no-html", is_flag=True, help="Do not write the HTML export.")
def seal_command(root: str | None, files: tuple[Path, ...], mask_parameters: bool, no_html: bool) -> None:
    """Scan FILES for secrets, export them to HTML and chain them into the ledger."""
    from .seal import SealRefused, seal_record

    refused = 0
    for path in files:
        try:
            result = seal_record(path, _root(root), html=not no_html, mask_parameters=mask_parameters)
        except SealRefused as e:
            click.echo(str(e), err=True)
            refused += 1
            continue
        state = "already sealed" if result.already_sealed else "sealed"
        click.echo(f"{state}: {result.record}" + (f" (+ {result.html.name})" if result.html else ""))
    sys.exit(1 if refused else 0)


@records.command("export")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
def export_command(file: Path, output: Path | None) -> None:
    """Write FILE's HTML export (refused if the record holds a secret)."""
    from .export import export_html
    from .seal import SealRefused, scan_notebook

    findings = scan_notebook(file)
    if findings:
        raise click.ClickException(str(SealRefused(file, findings, reason="holds secrets; not exporting")))
    click.echo(export_html(file, output))


@records.command("publish")
@_root_option
@click.option("--url", default=None, help="Archive URL (default: RUNBOOKS_RECORDS_URL or the profile's records.url).")
@click.option("--env", default=None, help="Profile whose records.url (and storage_options) to use.")
def publish_command(root: str | None, url: str | None, env: str | None) -> None:
    """Copy every sealed record the archive lacks, then the ledger, to the archive URL."""
    from .archive import archive_url, publish_ledger

    target = url or archive_url(env)
    if not target:
        raise click.UsageError("no archive URL: pass --url s3://... or set records.url in the profile")
    options = {}
    if env:
        from ..config.profiles import load_profile

        options = load_profile(env).records.storage_options
    copied = publish_ledger(_root(root), target, options)
    click.echo(f"published {len(copied)} file(s) to {target}")


@records.command("pull")
@click.argument("url")
@click.option("--to", "to", required=True, type=click.Path(path_type=Path), help="Folder to mirror the archive into.")
def pull_command(url: str, to: Path) -> None:
    """Mirror an archive (s3://...) into a folder; then `list`/`verify --root FOLDER` read it."""
    from .archive import pull

    count = pull(url, to)
    click.echo(f"pulled {count} file(s) from {url} into {to}")
