"""The run context: one call at the top of a runbook resolves everything a run needs.

``start(runbook, env, **params)`` loads and validates the profile and the parameters, checks
the cluster identity, and returns a ``RunContext`` that names and times steps, journals each
one (so a later run can resume safely), collects measured figures, and writes the summary
scrap (mime type ``application/vnd.veza.runbook+json``) at the end — or, when a cell fails,
from an IPython hook, so a failed run's record still says which step failed and why.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from pydantic import BaseModel, ValidationError

from ..config.clock import iso, utcnow
from ..config.parameters import missing_required
from ..config.profiles import Profile, load_profile, project_home
from ..display import Said, Tables, Titled
from ..errors import ParameterError, RunbookError, StepSkipped, outcome_of
from ..records.redaction import redact, register_profile_secrets, register_secret, secret_parameter_values
from ..records.secret import SecretValue
from ..records.summary import SUMMARY_MIME, Summary, masked_parameters, summary_bundle
from .journal import Journal, env_folder, journal_path
from .liveness import this_process

__all__ = ["RunContext", "StepRecord", "start", "SUMMARY_MIME", "current", "journal_path"]

_current: "RunContext | None" = None


def current() -> "RunContext | None":
    """The run started last in this process (the kernel), if any."""
    return _current


@dataclass
class StepRecord:
    """One step of a run, as the summary and the journal keep it."""

    name: str
    key: str
    started: str
    finished: str | None = None
    duration_s: float | None = None
    outcome: str = "running"
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def note(self, **detail: Any) -> None:
        """Attach figures or facts to the step (they go to the summary)."""
        self.detail.update(detail)


def _git_sha(home: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(home), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _protect(params: Mapping[str, Any]) -> None:
    """Filter the kernel's outputs and register secret-named parameters, before anything prints."""
    from ..records.kernel import install_filters

    install_filters()
    register_secret(secret_parameter_values(params) +
                    [v for v in params.values() if isinstance(v, SecretValue)])


def runner_facts() -> dict[str, Any]:
    """What ``runbook run`` tells its kernel (run id, record name, notebook hash): a JSON file
    named by ``RUNBOOK_RUN_FILE`` in the kernel's environment. Empty in JupyterLab or under
    plain papermill, where the run makes up its own id."""
    path = os.environ.get("RUNBOOK_RUN_FILE")
    if not path:
        return {}
    try:
        facts = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return facts if isinstance(facts, dict) else {}


def _load_replay(facts: Mapping[str, Any]) -> Any:
    """The original run's journal when ``runbook resume`` started this run, else None."""
    if not facts.get("replay_journal"):
        return None
    from .replay import Replay

    return Replay.load(facts["replay_journal"])


def _in_ipython() -> Any:
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython else None


class RunContext:
    """A run of one runbook against one environment."""

    def __init__(
        self,
        runbook: str,
        env: str,
        profile: Profile | None,
        params: dict[str, Any],
        *,
        run_id: str | None = None,
        home: Path | None = None,
    ) -> None:
        self.runbook = runbook
        self.env = env
        self.profile = profile
        self.params = params  # as the record keeps them (JSON values)
        self.parameters: Any = None  # the same, validated and typed by the runbook's schema (start())
        self.home = home or project_home()
        self._facts = runner_facts()
        self.run_id = run_id or self._facts.get("run_id") or uuid.uuid4().hex[:12]
        self.started = utcnow()
        # In JupyterLab nobody writes the record: the kernel keeps it and finish() seals it.
        self._session = _record_session(self)
        self.finished: datetime | None = None
        self.outcome: str | None = None
        self.error: str | None = None
        self.failed_step: str | None = None
        self.steps: list[StepRecord] = []
        self.figures: dict[str, float | int | None] = {}
        self.links: list[dict[str, str]] = []
        self.verdicts: list[dict[str, Any]] = []
        self.judged: list[dict[str, Any]] = []  # every window a verdict judged (runbook judge replay re-judges them)
        self.notes: dict[str, str] = {}
        self.cluster: dict[str, Any] | None = None
        self._on_finish: list[Any] = []
        self._watched: dict[str, Callable[[], dict[str, Any]]] = {}  # step key -> the state its result rests on
        from ..platform.api_retry import retries_made

        self._api_retries_before = retries_made()  # this kernel may have run others before
        from ..records.identity import operator_entity, operator_identity, operator_name

        # Who ran it: a person (operator), and the Vault and Kubernetes identities used — never a token.
        self.identity = operator_identity(profile)
        self.operator = operator_name(self.identity)
        self.operator_entity = operator_entity(self.identity)  # the Vault login's entity: what four eyes compares
        self.journal = Journal(journal_path(env, self.run_id))
        # A run started by `runbook resume` replays what the original run completed (runbooks_lib.run.replay).
        self.replay = _load_replay(self._facts)
        self.journal.write(event="run-started", runbook=runbook, env=env, params=masked_parameters(params),
                           operator=self.operator, operator_entity=self.operator_entity,
                           record=self.record_name, notebook=self._facts.get("notebook"),
                           notebook_parameters=self._facts.get("parameters"),
                           resume_of=self.replay.run_id if self.replay else None,
                           runner=self._facts.get("runner"),  # who ends the run if `runbook run` dies (dead_runs)
                           # this kernel: one that outlives its runner is stopped (dead_runs)
                           kernel=this_process() if self._facts.get("runner") else None)
        if self.replay is not None:
            self.link("resumes", self.replay.record or self.replay.run_id)

    # -- what a runbook calls ------------------------------------------------------------

    @property
    def record_name(self) -> str | None:
        """The record's path below the records root, as the runner named it (None in JupyterLab
        or under plain papermill, where `runbook records seal` names it later)."""
        return self._facts.get("record")

    @property
    def dry_run(self) -> bool:
        return bool(self.params.get("dry_run", False))

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @contextlib.contextmanager
    def step(self, name: str, key: str | None = None) -> Iterator[StepRecord]:
        """Time, name and journal one step. ``key`` identifies it for a safe resume."""
        record = StepRecord(name=name, key=key or name, started=iso(utcnow()) or "")
        self.steps.append(record)
        self.journal.write(event="step-started", step=name, key=record.key)
        print(f"▶ {name}", flush=True)
        begun = time.monotonic()
        try:
            yield record
        except StepSkipped as skipped:  # the procedure says this step does not apply: not a failure
            record.outcome = "skipped"
            record.detail["skipped"] = str(skipped)
        except BaseException as e:
            record.outcome = outcome_of(e)
            record.error = redact(f"{type(e).__name__}: {e}")
            self.failed_step = name
            raise
        else:
            # A step replayed from the run being resumed (run_step) was not done again.
            record.outcome = "replayed" if "replayed_from" in record.detail else "succeeded"
        finally:
            record.duration_s = round(time.monotonic() - begun, 3)
            record.finished = iso(utcnow())
            self.journal.write(
                event="step-finished", step=name, key=record.key, outcome=record.outcome,
                duration_s=record.duration_s, error=record.error,
            )
            mark = {"succeeded": "✓", "replayed": "↺", "skipped": "–"}.get(record.outcome, "✗")
            why = f" ({record.detail['skipped']})" if record.outcome == "skipped" else ""
            print(f"{mark} {name}: {record.outcome}{why} in {record.duration_s:.1f} s", flush=True)
            self._journal_watched_state()

    def checkpoint(self) -> None:
        """Journal now the state earlier steps' results rest on (as after every step). A step calls
        it right after its change is applied: if the run dies before the step ends, a resume sees
        the change as this run's own, not as drift."""
        self._journal_watched_state()

    def _journal_watched_state(self) -> None:
        """After every step, the state that earlier steps' results rest on, as it is now: a resume
        compares the cluster with what this run last saw, its own changes included."""
        if not self._watched or self.dry_run:
            return
        states = {}
        for read in self._watched.values():
            try:
                facts = read()
            except Exception:  # an unreachable API server: the last state journaled still stands
                continue
            states[str(facts.get("object"))] = facts
        if states:
            self.journal.write(event="state", states=list(states.values()))

    def run_step(self, name: str, action: Callable[[], Any], *, key: str | None = None, replay: bool = False,
                 state: Callable[[], dict[str, Any]] | None = None, on_replay: Callable[[], Any] | None = None) -> Any:
        """Run ``action()`` as a step of the record (timed, journaled, its failure named) and return
        its result, text shown as text: the one way a notebook makes a step.

        ``replay=True``: its result and resulting ``state()`` are journaled too, so a resumed run
        replays it instead of repeating it: the recorded result comes back, after ``state()`` read
        again matched the recorded one (else GuardRefused, exit 4: drift). ``on_replay`` is what a
        replay must still do (e.g. take the lock again); its result is returned. Without it, a
        resumed run does the step again (a read, a verification)."""
        from .replay import encode_result

        key = key or name
        done = self.replay.completed(key) if self.replay is not None and replay else None
        if done is not None:
            return _as_shown(self._replay_step(name, key, done, state, on_replay), name)
        result: Any = None
        with self.step(name, key=key) as record:
            result = action()
            if replay:
                self.journal.write(event="step-result", step=name, key=key, result=encode_result(result),
                                   state=state() if state and not self.dry_run else None)
            if state is not None:
                self._watched[key] = state
        if record.outcome == "skipped":
            return Said(f"{name}: skipped ({record.detail['skipped']})")
        return _as_shown(result, name)

    def _replay_step(self, name: str, key: str, done: Any, state: Any, on_replay: Any) -> Any:
        from ..errors import GuardRefused
        from .replay import decode_result, describe_drift

        origin = done.replayed_from or self.replay.run_id
        with self.step(name, key=key) as step:
            now = state() if state else None
            # Compared with what the original run saw last (its own later changes are not drift).
            seen = self.replay.latest_state(done.state) if done.state else None
            drift = describe_drift(seen, now) if state else None
            if state is not None:
                self._watched[key] = state
            if drift:
                raise GuardRefused(f"drift since run {origin} did {name!r}: {drift}; refusing to act on stale facts")
            redone = on_replay() if on_replay is not None else None
            step.note(replayed_from=origin, completed_at=done.finished_at)
            self.journal.write(event="step-result", step=name, key=key, result=done.result, state=now or done.state,
                               replayed_from=origin)
            checked = "; the cluster still matches" if state else ""
            print(f"done by run {origin} at {done.finished_at}: not repeated{checked}", flush=True)
        return redone if on_replay is not None else decode_result(done.result)

    def gate(self, name: str, what_changes: "str | Callable[[], str]",
             state: Callable[[], dict[str, Any]] | None = None) -> Any:
        """Stop before a change until someone allowed to approves it (where the profile says so).

        Headless, the run ends here awaiting approval (exit 3, nothing changed, people told);
        ``runbook approve`` then ``runbook resume`` continue it. ``state()`` is what the approval
        is for (e.g. the Deployment's generation and image): a resume finding it changed refuses."""
        from .gates import pass_gate

        return pass_gate(self, name, what_changes, state)

    def on_finish(self, callback: Any) -> None:
        """Run ``callback()`` when the run ends, succeeded or not (e.g. release a lock)."""
        self._on_finish.append(callback)

    def figure(self, name: str, value: float | int | None) -> None:
        """A named measurement for the record (time_to_rollback_s, failed_requests, ...)."""
        self.figures[name] = value

    def link(self, relation: str, record: str) -> None:
        """Relate this run to another record (e.g. the deploy a rollback undid)."""
        self.links.append({"relation": relation, "record": record})

    def note(self, name: str, text: str) -> None:
        """A fact the summary must carry in words, e.g. an operator's override of a guard."""
        self.notes[name] = redact(text)
        self.journal.write(event="note", name=name, text=self.notes[name])

    def verdict(self, service: str, version: str, verdict: str, why: str) -> None:
        """State what this run learned about a version ("good" or "bad", and why): later deploys
        and rollbacks read it from the catalog before choosing a target (runbooks_lib.procedures.judging.verdicts)."""
        entry = {"service": service, "version": version, "verdict": verdict, "why": redact(why),
                 "at": utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")}
        self.verdicts.append(entry)
        self.journal.write(event="verdict", **entry)

    def judged_window(self, window: dict[str, Any]) -> None:
        """Keep a judged window (what it counted, look by look, and how it ended) for the record."""
        self.judged.append(window)
        self.journal.write(event="judged", **{k: v for k, v in window.items() if k != "looks"})

    def steps_table(self) -> Any:
        """The steps so far with their outcome and duration, and the figures measured."""
        import pandas as pd

        rows = [{"step": s.name, "outcome": s.outcome, "seconds": s.duration_s, "error": s.error or ""} for s in self.steps]
        return pd.DataFrame(rows).set_index("step") if rows else pd.DataFrame()

    # -- the end of a run ----------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        return self._summary().as_dict()

    def _summary(self) -> Summary:
        return Summary(
            runbook=self.runbook, env=self.env, run_id=self.run_id, outcome=self.outcome or "running",
            service=self.service, parameters=masked_parameters(self.params), operator=self.operator,
            identity=self.identity, record=self._facts.get("record"), git_sha=_git_sha(self.home),
            notebook_sha256=self._facts.get("notebook_sha256"), cluster=self.cluster,
            started=iso(self.started), finished=iso(self.finished),
            duration_s=round((self.finished - self.started).total_seconds(), 3) if self.finished else None,
            failed_step=self.failed_step, error=self.error, steps=[asdict(s) for s in self.steps],
            figures=dict(self.figures), links=list(self.links), verdicts=list(self.verdicts), notes=dict(self.notes),
            judged=list(self.judged),
        )

    def finish(self, outcome: str = "succeeded") -> dict[str, Any]:
        """End the run and write the summary scrap into the record."""
        self.outcome = outcome
        self.finished = utcnow()
        while self._on_finish:
            callback = self._on_finish.pop()
            try:
                callback()
            except Exception as e:  # the run's end must still be recorded
                print(f"warning: cleanup {getattr(callback, '__name__', callback)} failed: {type(e).__name__}: {e}")
        from ..platform.api_retry import retries_made

        if retries_made() > self._api_retries_before:  # the API server refused some requests: say how many
            self.figures["api_server_retries"] = retries_made() - self._api_retries_before
        summary = self._summary()
        self.journal.write(event="run-finished", outcome=outcome)
        _show_summary(summary)
        if self._session is not None:
            self._seal_session()
        return summary.as_dict()

    def _seal_session(self) -> None:
        """The interactive run's record, written and sealed now that its summary is shown."""
        from ..records.kernel import remove_tap
        from ..records.session import write_and_seal

        recorder, self._session = self._session, None
        remove_tap(recorder.on_message)
        for stream in (sys.stdout, sys.stderr):  # the kernel sends prints in batches: the last ones too
            stream.flush()
        root = self._records_root()
        print(write_and_seal(recorder, root / self._facts["record"], root), flush=True)

    def _records_root(self) -> Path:
        from ..records.ledger import records_root

        try:
            return records_root(self.env)
        except RunbookError:  # a refused run's env may be no profile at all
            return records_root(None)

    def fail(self, error: BaseException) -> dict[str, Any]:
        """End the run because of ``error``; the summary names the failing step."""
        self.error = redact(f"{type(error).__name__}: {error}")
        if self.failed_step is None and self.steps and self.steps[-1].outcome not in ("succeeded", "skipped"):
            self.failed_step = self.steps[-1].name
        return self.finish(outcome_of(error))

    def __enter__(self) -> "RunContext":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.finished is None:
            self.fail(exc) if exc is not None else self.finish()


def _record_session(ctx: RunContext) -> Any:
    """A recorder of this kernel's cells when JupyterLab runs it (records.session), else None;
    the record's name goes into the run's facts, so the summary and the journal carry it."""
    from ..records.kernel import add_tap
    from ..records.ledger import record_path
    from ..records.session import SessionRecorder, interactive_session

    notebook = interactive_session()
    ip = _in_ipython()
    if notebook is None or ip is None:
        return None
    sources = [s for s in (ip.user_ns.get("In") or [])[1:] if isinstance(s, str)]
    recorder = SessionRecorder(notebook, sources)
    add_tap(recorder.on_message)
    root = ctx._records_root()
    ctx._facts["record"] = record_path(root, env_folder(ctx.env), ctx.runbook, ctx.run_id,
                                       ctx.started).relative_to(root).as_posix()
    return recorder


def _show_summary(summary: Summary) -> None:
    if _in_ipython() is not None:
        from IPython.display import display

        display(summary_bundle(summary), raw=True)
    else:
        print(summary.headline())


def _on_cell_error(result: Any) -> None:
    """IPython post_run_cell hook: a failing cell ends the run with a failed summary."""
    ctx = _current
    error = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
    if ctx is None or error is None or ctx.finished is not None:
        return
    if ctx.failed_step is None:
        # The error happened outside any step: name the cell, as papermill's banner does.
        count = getattr(getattr(result, "info", None), "execution_count", None) or getattr(result, "execution_count", None)
        ctx.failed_step = f"cell {count} (outside any step)" if count else "a cell outside any step"
    ctx.fail(error)


def _install_failure_hook() -> None:
    ip = _in_ipython()
    if ip is None:
        return
    callbacks = ip.events.callbacks.get("post_run_cell", [])
    if _on_cell_error not in callbacks:
        ip.events.register("post_run_cell", _on_cell_error)


def _validate(schema: type[BaseModel] | None, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The parameters as the schema types them, and as the record keeps them (JSON values)."""
    if schema is None:
        return None, params
    try:
        model = schema.model_validate(params)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '(all)'}: {err['msg']}" for err in e.errors())
        raise ParameterError(f"invalid parameters: {problems}") from None
    return model, model.model_dump(mode="json")


def start(
    runbook: str,
    env: str,
    schema: type[BaseModel] | None = None,
    *,
    check_cluster: bool = True,
    home: Path | None = None,
    **params: Any,
) -> RunContext:
    """Begin a run: validate everything, check the cluster, and return the run's context.

    ``schema`` (the runbook's parameters model) validates and types the parameters: ``ctx.parameters``
    is the typed model the notebook hands on to its procedure. A field without a default is required:
    one left at None is refused naming it, also for runs that did not come through ``runbook run``
    (plain papermill).

    Raises ProfileError/ParameterError (exit 2) or GuardRefused (exit 4) before anything changes;
    in a notebook the failure hook still writes a summary saying the run was refused.
    """
    global _current
    _protect(params)
    _install_failure_hook()
    home = home or project_home()
    try:
        required = [name for name, f in (schema.model_fields.items() if schema else ()) if f.is_required()]
        missing = missing_required(tuple(required), params)
        if missing is not None:
            raise missing
        profile = load_profile(env, home)
        register_profile_secrets(profile)  # its DSNs, tokens and webhook URL never reach the record
        model, values = _validate(schema, dict(params))
        if values.get("service") not in (None, "all"):  # "all": a run about every service (incident)
            profile.services.get(values["service"])
    except RunbookError as e:
        _refused_before_start(runbook, env, params, home, e)
        raise
    ctx = RunContext(runbook, env, profile, values, home=home)
    ctx.parameters = model
    _current = ctx
    _show_operator(ctx)
    if check_cluster:
        from .cluster_identity import check_cluster_identity

        with ctx.step("Check cluster identity", key="cluster-identity") as step:
            check = check_cluster_identity(profile)
            ctx.cluster = {"server": check.server, "context": check.context, "identity": check.found}
            step.note(server=check.server, identity=check.found)
    return ctx


def _as_shown(result: Any, name: str) -> Any:
    """A step's result as the cell shows it: text as text (display.Said); a bare table titled with
    the step's name, several as titled tables, so every table in a record has its title."""
    if isinstance(result, str):
        return result if isinstance(result, Said) else Said(result)
    if hasattr(result, "to_html") and hasattr(result, "columns") and not isinstance(result, Titled):
        return Titled(name, result)
    if isinstance(result, Mapping) and not isinstance(result, Tables) and result \
            and all(hasattr(v, "to_html") for v in result.values()):
        return Tables(result)
    return result


def _show_operator(ctx: RunContext) -> None:
    """Who is operating, and from where that name comes, before the first step."""
    from ..records.identity import operator_source

    vault = (ctx.identity.get("vault") or {}).get("display_name")
    print(f"operator: {ctx.operator} ({operator_source(ctx.identity)})"
          + (f"; Vault identity {vault}" if vault else ""), flush=True)


def _refused_before_start(runbook: str, env: str, params: dict[str, Any], home: Path, error: RunbookError) -> None:
    """Even a run refused for bad parameters leaves a summary saying so."""
    global _current
    _current = RunContext(runbook, env, None, dict(params), home=home)
    _current.failed_step = "validate parameters"
    _current.fail(error)
