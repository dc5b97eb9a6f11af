"""The project's runner image, ``<repository>/veza-runbooks:<version>``, as a local process.

In a real cluster that image holds this project with its Python, its notebooks under the
working directory and ``runbook``/``papermill`` on its PATH (entrypoint ``runbook``); a Job or
CronJob runs a runbook headless with it. In the sandbox a container of that image runs its
command line with the project's own interpreter, in the project folder, with the image's
environment (project-local Jupyter folders): ``runbook run notebooks/x.ipynb --env sandbox``
becomes ``<python> -m runbooks_lib.cli run notebooks/x.ipynb --env sandbox``. The tags the
sandbox's registry holds are the project's version (``v0.1.0`` or ``0.1.0``) and ``latest``;
another tag fails to pull, as on a cluster.

The image runs the runbook runner and nothing else: ``runbook run|resume|records ...`` and
``papermill`` on a notebook of the project. A container of it is a process on this machine, as
the sandbox's user: a pod that could run ``sh``, ``bash``, ``python -c`` or any program would be
anyone-who-can-create-a-Job running code on the host. Any other command line, a notebook from
outside ``notebooks/``, a papermill option that runs code of the caller's choosing (raw
parameters, another engine, kernel or language) or an environment variable that changes what
the interpreter loads (``PYTHON*``, ``LD_*``, Jupyter's and IPython's folders) is refused before
the container starts (CreateContainerError, saying why), as an unlisted tag fails to pull.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from runbooks_lib.config.paths import project_home

from ..workload import ImagePullError
from ..workload.catalog import parse_image

__all__ = ["RUNNER_IMAGE_NAME", "runner_tags", "is_runner_image", "pull_runner_image", "runner_process",
           "CommandNotFound", "CommandRefused"]

RUNNER_IMAGE_NAME = "veza-runbooks"
# The image's entrypoints, run with the project's interpreter.
_PYTHON_MODULES = {"runbook": "runbooks_lib.cli", "papermill": "papermill"}
# What `runbook` may do in the image: run, resume and read runs (no approve, schedule, sandbox...).
_RUNBOOK_COMMANDS = frozenset({"run", "resume", "records", "--help"})
# papermill options that only pass parameters or shape the output, with how many values each takes.
_PAPERMILL_OPTIONS = {"-p": 2, "--parameters": 2, "-f": 1, "--parameters_file": 1, "-y": 1, "--parameters_yaml": 1,
                      "-b": 1, "--parameters_base64": 1, "--log-level": 1, "--start-timeout": 1, "--start_timeout": 1,
                      "--execution-timeout": 1, "--autosave-cell-every": 1, "--inject-input-path": 0,
                      "--inject-output-path": 0, "--inject-paths": 0, "--request-save-on-cell-execute": 0,
                      "--no-request-save-on-cell-execute": 0, "--progress-bar": 0, "--no-progress-bar": 0,
                      "--log-output": 0, "--no-log-output": 0, "--report-mode": 0, "--no-report-mode": 0,
                      "--help-notebook": 0, "-h": 0, "--help": 0}
# Environment variables that change which code the interpreter, a kernel or IPython loads.
_CODE_LOADING_PREFIXES = ("PYTHON", "LD_", "JUPYTER", "IPYTHON")
_IMAGE_OWNED = frozenset({"RUNBOOKS_HOME", "PATH", "VIRTUAL_ENV"})
_ALLOWED = "runbook run|resume|records ... or papermill on a notebook of the project"


class CommandNotFound(LookupError):
    """The container's command is not in the image (the kubelet's StartError)."""


class CommandRefused(CommandNotFound):
    """The command is in no image of the project's: the runner image runs the runbook runner only."""


def runner_tags() -> set[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        current = version("veza-runbooks")
    except PackageNotFoundError:
        current = "0.0.0"
    return {current, f"v{current}", "latest"}


def is_runner_image(image: str, repository: str) -> bool:
    try:
        registry, name, _ = parse_image(image)
    except ImagePullError:
        return False
    return name == RUNNER_IMAGE_NAME and registry == repository


def _argv(command: list[str], home: Path) -> list[str]:
    """The local command line for the container's; CommandRefused for anything but the runner."""
    program, rest = command[0], command[1:]
    base = Path(program).name
    if base not in _PYTHON_MODULES:
        raise CommandRefused(f'exec: "{program}": the runner image runs only {_ALLOWED}')
    if base == "runbook":
        _check_runbook(rest, home)
    else:
        _check_papermill(rest, home)
    return [sys.executable, "-m", _PYTHON_MODULES[base], *rest]


def _project_notebook(path: str, home: Path, program: str) -> None:
    notebooks = (home / "notebooks").resolve()
    resolved = (home / path).resolve()  # an absolute path stays itself
    if "://" in path or resolved.suffix != ".ipynb" or notebooks not in resolved.parents or not resolved.is_file():
        raise CommandRefused(f"{program}: {path!r} is not a notebook of the project (notebooks/*.ipynb): "
                             f"the runner image runs only {_ALLOWED}")


def _check_runbook(args: list[str], home: Path) -> None:
    if args and args[0] not in _RUNBOOK_COMMANDS:
        raise CommandRefused(f'runbook {args[0]}: the runner image runs only {_ALLOWED}')
    if args[:1] == ["run"]:
        # As `runbook schedule` writes it: the notebook first, so no option's value passes for it.
        if len(args) < 2 or args[1].startswith("-"):
            raise CommandRefused("runbook run: name the notebook first (runbook run notebooks/<runbook>.ipynb ...)")
        _project_notebook(args[1], home, "runbook run")


def _check_papermill(args: list[str], home: Path) -> None:
    """papermill NOTEBOOK [OUTPUT] with options that pass parameters or shape the output only."""
    positional, index = [], 0
    while index < len(args):
        name = args[index].split("=", 1)[0] if args[index].startswith("--") else args[index]
        if not name.startswith("-") or name == "-":
            positional.append(args[index])
            index += 1
            continue
        if name not in _PAPERMILL_OPTIONS:
            raise CommandRefused(f"papermill {name}: not an option the runner image takes (it would run or load "
                                 f"code of the caller's choosing); it runs only {_ALLOWED}")
        index += 1 + (0 if "=" in args[index] else _PAPERMILL_OPTIONS[name])
    if not positional:
        raise CommandRefused(f"papermill: no notebook named; the runner image runs only {_ALLOWED}")
    _project_notebook(positional[0], home, "papermill")
    for output in positional[1:]:
        if output != "-" and ("://" in output or not output.endswith(".ipynb")
                              or (home / "notebooks").resolve() in (home / output).resolve().parents):
            raise CommandRefused(f"papermill: output {output!r} must be a local .ipynb outside notebooks/ (or -)")


def _check_environment(env: dict[str, str]) -> None:
    """Refuse variables that would make the interpreter load other code than the project's."""
    loading = sorted(k for k in env if k.startswith(_CODE_LOADING_PREFIXES) or k in _IMAGE_OWNED)
    if loading:
        raise CommandRefused(f"the runner image sets {', '.join(loading)} itself: a container may not change "
                             "what its interpreter loads")


def pull_runner_image(image: str) -> None:
    """ImagePullError for a tag the sandbox's registry does not hold."""
    _, _, tag = parse_image(image)
    if tag not in runner_tags():
        raise ImagePullError(image, "tag", f"manifest for {image.rpartition(':')[0]}:{tag} not found")


def runner_process(image: str, container: dict[str, Any], env: dict[str, str]) -> tuple[list[str], dict[str, str], Path]:
    """(argv, environment, working directory) for a runner-image container; ImagePullError for an
    unknown tag, CommandRefused for a command line or environment the image does not run."""
    pull_runner_image(image)
    command = list(container.get("command") or ["runbook"]) + list(container.get("args") or [])
    home = project_home()
    argv = _argv(command, home)
    _check_environment(env)
    jupyter = home / ".jupyter"
    image_env = {"RUNBOOKS_HOME": str(home), "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
                 "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"), "IPYTHONDIR": str(jupyter / "ipython"),
                 "PYTHONUNBUFFERED": "1"}
    return argv, {**env, **image_env}, home
