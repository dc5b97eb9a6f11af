"""``runbook sandbox up|down|status|traffic|fault``: the local Veza platform from the command line.

Plugged into ``runbook`` through the ``runbook.commands`` entry point; each command is a thin
adapter over :class:`runbooks_sandbox.stack.Sandbox`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from runbooks_lib.errors import RunbookError

from .servers.ports import ServerError

__all__ = ["sandbox"]

_state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where the sandbox keeps its files and .sandbox/env (default: <project>/.sandbox).")


def _sandbox(state_dir: Path | None, stopping: bool = False, **options: Any) -> Any:
    """The sandbox in ``state_dir``; one an earlier version started on its retired home-made
    Kubernetes is refused with what to do, except by ``down`` (``stopping``), which stops it."""
    from .stack import Sandbox

    box = Sandbox(state_dir, **options)
    if not stopping:
        try:
            box.refuse_retired()
        except ServerError as e:
            raise _fail(e) from e
    return box


def _fail(error: Exception) -> click.ClickException:
    return click.ClickException(str(error))


@click.group("sandbox")
def sandbox() -> None:
    """Start, inspect and stop the local Veza platform (pods as processes, OpenBao, PostgreSQL, Prometheus)."""


@sandbox.command("up")
@_state_dir_option
@click.option("--no-wait", is_flag=True, help="Return once everything is started, without waiting for healthy pods.")
@click.option("--timeout", "timeout_s", type=float, default=180.0, show_default=True,
              help="Seconds to wait for every deployment and Prometheus target.")
@click.option("--load-rate", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Requests per second the load generator sends to each Service.")
@click.option("--dr-region-of", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Start a disaster-recovery region for the sandbox in this state directory: its own cluster "
                   "(empty), Redis and Prometheus, an OpenBao replicated from it, no database (the region drill "
                   "restores it). Give it its own --state-dir.")
def up_command(state_dir: Path | None, no_wait: bool, timeout_s: float, load_rate: float,
               dr_region_of: Path | None) -> None:
    """Start the sandbox and write .sandbox/env (KUBECONFIG, VAULT_ADDR, PROMETHEUS_URL...).

    Its cluster is the real Kubernetes control plane (kube-apiserver, etcd, controller manager,
    scheduler; `make controlplane` builds them) behind a fault proxy, with the node agent's 2 nodes,
    in a network namespace of the sandbox's own (needs root)."""
    import time

    from tqdm import tqdm

    if dr_region_of is not None and (state_dir is None or state_dir.resolve() == dr_region_of.resolve()):
        raise click.UsageError("--dr-region-of needs a --state-dir of its own (e.g. --state-dir .sandbox-dr)")
    box = _sandbox(state_dir, load_rate=load_rate, dr_region_of=dr_region_of)

    def progress(total: int, description: str) -> Any:
        return tqdm(total=total, desc=description, unit="pod", file=sys.stderr, leave=False,
                    disable=None)  # None: no bar when stderr is not a terminal

    started = time.monotonic()
    try:
        values = box.up(wait=not no_wait, progress=progress, timeout_s=timeout_s,
                        say=lambda line: click.echo(line, err=True))
    except (ServerError, TimeoutError) as e:
        raise _fail(e) from e
    click.echo(f"sandbox up in {time.monotonic() - started:.1f} s: namespace {values.get('NAMESPACE')}, "
               f"API {_server(values.get('KUBECONFIG'))}")
    stop = "runbook sandbox down" + (f" --state-dir {box.state_dir}" if state_dir else "")
    click.echo(f"env: {box.env_path}  (use it: `. {box.env_path}`; stop: `{stop}`)")
    if dr_region_of is not None:
        if box.state_dir != box.home / ".sandbox-dr":
            click.echo(f"the sandbox-dr profile reads this region's values with RUNBOOKS_DR_SANDBOX_ENV={box.env_path}")
    elif state_dir and box.state_dir != box.home / ".sandbox":
        click.echo(f"profiles read the sandbox's values with RUNBOOKS_SANDBOX_ENV={box.env_path}")


def _server(kubeconfig: str | None) -> str:
    if not kubeconfig:
        return "?"
    import yaml

    try:
        return yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
    except (OSError, KeyError, IndexError, TypeError):
        return kubeconfig


@sandbox.command("down")
@_state_dir_option
def down_command(state_dir: Path | None) -> None:
    """Stop every process the sandbox started and remove .sandbox/env (safe to repeat)."""
    box = _sandbox(state_dir, stopping=True)
    try:
        stopped = box.down(say=lambda line: click.echo(line, err=True))
    except ServerError as e:
        raise _fail(e) from e
    click.echo(f"sandbox down: stopped {', '.join(stopped)}" if stopped else "sandbox down: nothing was running")


@sandbox.command("status")
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_command(state_dir: Path | None, as_json: bool) -> None:
    """What runs where: components, PIDs, URLs, and each deployment's ready pods."""
    info = _sandbox(state_dir).status()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"sandbox {'running' if info['running'] else 'not running'} ({info['state_dir']})")
    if info.get("kubernetes"):
        _echo_kubernetes(info["kubernetes"])
    for name, part in info["components"].items():
        where = part.get("url") or part.get("api_url") or (f":{part['port']}" if part.get("port") else "")
        state = "alive" if part["alive"] else (part.get("fault") or "DEAD").upper()
        click.echo(f"  {name:<18} pid {part['pid'] or '-':<8} {state:<6} {where}")
    replication = (info.get("postgres") or {}).get("replication")
    if info.get("dr_region_of"):
        click.echo(f"  DR region of {info['dr_region_of']}: no database until the region drill recovers one")
    if info.get("postgres"):
        pg = info["postgres"]
        click.echo(f"  postgres primary :{pg['primary']['port']} {'up' if pg['primary']['running'] else 'DOWN'}, "
                   f"standby :{pg['standby']['port']} {'up' if pg['standby']['running'] else 'DOWN'}, "
                   f"replication {(replication or {}).get('state') or 'none'}")
    for name, d in info["deployments"].items():
        click.echo(f"  deploy/{name:<22} {d['ready']}/{d['replicas']} ready  {d['image']}")
    if info.get("pods"):
        click.echo(f"  {len(info['pods'])} container processes: " + ", ".join(
            f"{key.split('/')[1]} ({pid})" for key, pid in sorted(info["pods"].items())))
    if info.get("memory"):
        _echo_memory(info["memory"])


def _echo_kubernetes(kubernetes: dict[str, Any]) -> None:
    """The control plane's versions and components."""
    versions = kubernetes.get("versions") or {}
    click.echo(f"kubernetes: real control plane, kubernetes {versions.get('kubernetes', '?')}, "
               f"etcd {versions.get('etcd', '?')}; network namespace {kubernetes.get('netns', '?')}")
    for name, part in (kubernetes.get("components") or {}).items():
        click.echo(f"  {name:<18} pid {part.get('pid') or '-':<8} {'alive' if part.get('pid') else 'DOWN':<6} "
                   f"{part.get('where') or ''}")


def _echo_memory(memory: dict[str, Any]) -> None:
    """The memory cost of the sandbox: total, each server, the pods per app."""
    click.echo(f"memory (RSS): {memory['total_mb']:.0f} MB in all; pods {memory['pods_mb']:.0f} MB")
    for name, mb in sorted(memory["components"].items(), key=lambda item: -item[1]):
        click.echo(f"  {name:<26} {mb:7.1f} MB")
    for app, entry in memory["by_app"].items():
        per_pod = entry["mb"] / entry["pods"] if entry["pods"] else 0.0
        click.echo(f"  pods of {app:<18} {entry['mb']:7.1f} MB  ({entry['pods']} pods, {per_pod:.1f} MB each)")


@sandbox.command("traffic")
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--since", help="Only requests sent at or after this ISO time (UTC if no offset).")
def traffic_command(state_dir: Path | None, as_json: bool, since: str | None) -> None:
    """Requests and failures per service (and version) seen by the load generator."""
    from .runtime.load import parse_since

    try:
        moment = parse_since(since) if since else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since") from e
    try:
        report = _sandbox(state_dir).traffic(moment)
    except (ServerError, OSError) as e:
        raise _fail(e) from e
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for service, totals in report.items():
        click.echo(f"{service:<22} {totals['requests']:>7} requests {totals['failed']:>6} failed")
        for version, v in totals["by_version"].items():
            click.echo(f"  {version:<20} {v['requests']:>7} requests {v['failed']:>6} failed  "
                       f"p50 {v['p50_ms']} ms  p99 {v['p99_ms']} ms")


@sandbox.command("fault")
@_state_dir_option
@click.argument("target")
@click.option("-n", "--namespace", default=None, help="Namespace of the pods (default: veza-sandbox).")
@click.option("--error-rate", type=click.FloatRange(0, 1), help="Fraction of API requests answered 500.")
@click.option("--latency-ms", type=click.FloatRange(0), help="Milliseconds added to every API request.")
@click.option("--health-fail", is_flag=True, help="/health fails: the liveness probe restarts the container.")
@click.option("--ready-fail", is_flag=True, help="/ready fails: the pod leaves its Service's endpoints.")
@click.option("--crash", is_flag=True, help="The running container exits once (it restarts).")
@click.option("--down", is_flag=True, help="TARGET prometheus or redis: stop the server (an outage) until --clear.")
@click.option("--seal", is_flag=True, help="TARGET vault: seal OpenBao (secret reads fail) until --clear.")
@click.option("--fail-writes", type=click.IntRange(min=1), default=None,
              help="TARGET apiserver: the next N writes are applied, then answered 500 (the answer lost).")
@click.option("--resource", default="", help="With --fail-writes: only writes to this resource (e.g. deployments).")
@click.option("--no-answer", is_flag=True, help="With --fail-writes: close the connection instead of answering 500.")
@click.option("--clear", is_flag=True, help="Remove every injected fault (prometheus, redis: start it again, data kept).")
def fault_command(state_dir: Path | None, target: str, namespace: str | None, error_rate: float | None,
                  latency_ms: float | None, fail_writes: int | None, resource: str, no_answer: bool,
                  health_fail: bool, ready_fail: bool, crash: bool, down: bool, seal: bool, clear: bool) -> None:
    """Inject faults into the running pods of a service (or one pod), or into the platform, for drills.

    TARGET is a service (veza-backend-api: all its pods), a pod name, or: `apiserver` (--error-rate:
    requests refused with 503, --latency-ms, --fail-writes N: writes applied then answered 500),
    `vault` (--seal), `prometheus` or `redis` (--down); --clear undoes each.
    """
    pod_flags = (health_fail, ready_fail, crash)
    if seal and target != "vault":
        raise click.UsageError("--seal applies to the vault target only")
    if (fail_writes is not None or resource or no_answer) and target != "apiserver":
        raise click.UsageError("--fail-writes, --resource and --no-answer apply to the apiserver target only")
    if (resource or no_answer) and fail_writes is None:
        raise click.UsageError("--resource and --no-answer say which writes fail and how: give --fail-writes N too")
    try:
        if target == "apiserver":
            asked = error_rate is not None or latency_ms is not None or fail_writes is not None
            if down or any(pod_flags) or clear == asked:
                raise click.UsageError("apiserver takes --error-rate, --latency-ms and/or --fail-writes, or --clear")
            click.echo(_sandbox(state_dir).api_server_fault(error_rate or 0.0, latency_ms or 0.0, clear=clear,
                                                            fail_writes=fail_writes or 0, resource=resource,
                                                            no_answer=no_answer))
        elif target == "vault":
            if seal == clear or down or any(pod_flags) or error_rate is not None or latency_ms is not None:
                raise click.UsageError("vault takes --seal (seal it) or --clear (unseal it), nothing else")
            click.echo(_sandbox(state_dir).vault_seal(sealed=seal))
        elif target in ("prometheus", "redis"):
            if down == clear or any(v not in (None, False) for v in (error_rate, latency_ms, *pod_flags)):
                raise click.UsageError(f"{target} takes --down (stop it) or --clear (start it again), nothing else")
            if target == "redis":
                click.echo(_sandbox(state_dir).cache_outage(down=down))
            else:
                _server_fault(state_dir, target, down, clear)
        else:
            _pod_faults(state_dir, target, namespace, error_rate, latency_ms, health_fail, ready_fail, crash, down, clear)
    except ServerError as e:
        raise _fail(e) from e


def _pod_faults(state_dir: Path | None, target: str, namespace: str | None, error_rate: float | None,
                latency_ms: float | None, health_fail: bool, ready_fail: bool, crash: bool, down: bool,
                clear: bool) -> None:
    """Faults into the running pods of a service, or into one pod, through the workload's fault file."""
    if down:
        raise click.UsageError("--down applies to a server (prometheus, redis), not to pods")
    faults: dict[str, Any] = {}
    if error_rate is not None:
        faults["error_rate"] = error_rate
    if latency_ms is not None:
        faults["extra_latency_ms"] = latency_ms
    if health_fail:
        faults["health_fail"] = True
    if ready_fail:
        faults["ready_fail"] = True
    if crash:
        faults["crash_now"] = True
    if not faults and not clear:
        raise click.UsageError("say which fault: --error-rate, --latency-ms, --health-fail, --ready-fail, --crash or --clear")
    try:
        pods = _sandbox(state_dir).fault(target, faults, clear=clear, namespace=namespace)
    except (LookupError, ValueError) as e:
        raise _fail(e) from e
    what = "cleared faults on" if clear and not faults else f"injected {', '.join(faults)} into"
    click.echo(f"{what} {len(pods)} pod(s): {', '.join(pods)}")


def _server_fault(state_dir: Path | None, target: str, down: bool, clear: bool) -> None:
    if down == clear:
        raise click.UsageError(f"say --down or --clear for {target}")
    box = _sandbox(state_dir)
    try:
        click.echo(box.server_down(target) if down else box.server_up(target))
    except (ServerError, ValueError) as e:
        raise _fail(e) from e


@sandbox.command("entry-point")
@_state_dir_option
@click.option("--on/--off", "serving", required=True,
              help="--on: the platform's users (the load generator) are sent to this sandbox; --off: no longer.")
def entry_point_command(state_dir: Path | None, serving: bool) -> None:
    """Switch the platform's entry point (DNS, in production) to this sandbox, or away from it."""
    try:
        click.echo(_sandbox(state_dir).entry_point(serving))
    except ServerError as e:
        raise _fail(e) from e


@sandbox.command("notifications")
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print every message as JSON (a list).")
def notifications_command(state_dir: Path | None, as_json: bool) -> None:
    """What the sandbox's webhook sink received (NOTIFY_URL), oldest first."""
    try:
        messages = _sandbox(state_dir).notifications()
    except ServerError as e:
        raise _fail(e) from e
    if as_json:
        click.echo(json.dumps(messages, indent=2))
        return
    if not messages:
        click.echo("no notifications received")
    for m in messages:
        flag = f"  [TOKEN SHAPES: {', '.join(m['secret_shapes'])}]" if m.get("secret_shapes") else ""
        click.echo(f"{m['received_at']}  {m.get('text')}{flag}")


@sandbox.command("login")
@_state_dir_option
@click.argument("person")
def login_command(state_dir: Path | None, person: str) -> None:
    """Log PERSON (alice, bob, carol) into the sandbox's OpenBao; the token goes to a 0600 file.

    Runs, approvals and records then know who acted from the token, not from a typed name:
    export VAULT_TOKEN=$(cat <the file>)."""
    from .servers.people import login

    box = _sandbox(state_dir)
    address = box.env().get("VAULT_ADDR")
    if not address or not box.is_running():
        raise _fail(ServerError(f"the sandbox is not running ({box.state_dir}): `runbook sandbox up` starts it"))
    try:
        path = login(address, box.state_dir, person)
    except (LookupError, RunbookError) as e:
        raise _fail(e) from e
    click.echo(f"{person} logged in; token in {path} (mode 0600): export VAULT_TOKEN=$(cat {path})")


@sandbox.command("load")
@_state_dir_option
@click.option("--rate", type=click.FloatRange(min=0.1), default=None, help="Requests per second.")
@click.option("--service", default=None, help="Only this service (default: every service).")
@click.option("--reset", is_flag=True, help="With --service: back to the common rate.")
def load_command(state_dir: Path | None, rate: float | None, service: str | None, reset: bool) -> None:
    """Change the load generator's rate while the sandbox runs (e.g. enough canary traffic to judge)."""
    if reset == (rate is not None) or (reset and not service):
        raise click.UsageError("give --rate R [--service S], or --service S --reset")
    try:
        rates = _sandbox(state_dir).set_load_rate(None if reset else rate, service)
    except (ServerError, OSError) as e:
        raise _fail(e) from e
    click.echo("load rates: " + ", ".join(f"{name} {r:g}/s" for name, r in sorted(rates.items())))


@sandbox.command("postgres")
@_state_dir_option
@click.argument("action", type=click.Choice(["kill-primary", "rebuild-standby"]))
def postgres_command(state_dir: Path | None, action: str) -> None:
    """Database drills: crash the primary (a lost host), or rebuild a standby after a failover."""
    box = _sandbox(state_dir)
    try:
        if action == "kill-primary":
            box.postgres_kill_primary()
            click.echo("postgres primary killed (immediate shutdown)")
        else:
            topology = box.postgres_rebuild_standby()
            click.echo(f"postgres primary :{topology['primary_port']}, standby :{topology['standby_port']} "
                       f"({(topology.get('replication') or {}).get('state') or 'not streaming'})")
    except (ServerError, OSError) as e:
        raise _fail(e) from e
