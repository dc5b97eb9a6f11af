"""The project's runner image, ``<repository>/veza-runbooks:<version>``, as a local process.

In a real cluster that image holds this project with its Python, its notebooks under the
working directory and ``runbook``/``papermill`` on its PATH (entrypoint ``runbook``); a Job or
CronJob runs a runbook headless with it. In the sandbox a container of that image runs its
command line with the project's own interpreter, in the project folder, with the image's
environment (project-local Jupyter folders): ``runbook run notebooks/x.ipynb --env sandbox``
becomes ``<python> -m runbooks_lib.cli run notebooks/x.ipynb --env sandbox``. The tags the
sandbox's registry holds are the project's version (``v0.1.0`` or ``0.1.0``) and ``latest``;
another tag fails to pull, as on a cluster.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from runbooks_lib.config.paths import project_home

from ..workload import ImagePullError
from ..workload.catalog import parse_image

__all__ = ["RUNNER_IMAGE_NAME", "runner_tags", "is_runner_image", "runner_process", "CommandNotFound"]

RUNNER_IMAGE_NAME = "veza-runbooks"
# What the image's PATH offers, mapped to this machine: the project's console scripts run with
# its interpreter; a few base-image tools come from the host.
_PYTHON_MODULES = {"runbook": "runbooks_lib.cli", "papermill": "papermill"}
_BASE_TOOLS = ("sh", "bash", "true", "false", "sleep", "echo", "cat", "env")


class CommandNotFound(LookupError):
    """The container's command is not in the image (the kubelet's StartError)."""


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


def _argv(command: list[str]) -> list[str]:
    program, rest = command[0], command[1:]
    base = Path(program).name
    if base in _PYTHON_MODULES:
        return [sys.executable, "-m", _PYTHON_MODULES[base], *rest]
    if base in ("python", "python3"):
        return [sys.executable, *rest]
    if base in _BASE_TOOLS and (found := shutil.which(base)):
        return [found, *rest]
    raise CommandNotFound(f'exec: "{program}": executable file not found in $PATH')


def runner_process(image: str, container: dict[str, Any], env: dict[str, str]) -> tuple[list[str], dict[str, str], Path]:
    """(argv, environment, working directory) for a runner-image container; ImagePullError for an unknown tag."""
    _, _, tag = parse_image(image)
    if tag not in runner_tags():
        raise ImagePullError(image, "tag", f"manifest for {image.rpartition(':')[0]}:{tag} not found")
    command = list(container.get("command") or ["runbook"]) + list(container.get("args") or [])
    home = project_home()
    jupyter = home / ".jupyter"
    image_env = {"RUNBOOKS_HOME": str(home), "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
                 "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"), "IPYTHONDIR": str(jupyter / "ipython"),
                 "PYTHONUNBUFFERED": "1"}
    return _argv(command), {**image_env, **env}, home
