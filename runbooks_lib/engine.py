"""The kernel a run executes in, and the papermill engine that drives it.

``RunKernel`` starts the kernel the moment ``runbook run`` starts, so the kernel boots (a
second or two of imports) while the runner is still checking the parameters and the
profile. It talks over Unix sockets in the run's private folder (nothing else on a shared
machine can reach it, and ipykernel does not warn about unencrypted TCP), gets its
environment as an argument (``RUNBOOKS_HOME``, the run file, Jupyter's folders) instead of
the runner changing its own ``os.environ``, and writes its own stdout/stderr to a log file
(only the notebook's outputs reach the terminal, once each).

The ``runbook`` papermill engine (registered as papermill registers its own) echoes each
output to the terminal as it comes: stream text raw, so a tqdm bar's carriage returns
redraw one live line instead of a new line per update; other outputs as their text form.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, TextIO

__all__ = ["RunKernel", "register_engine", "ENGINE"]

ENGINE = "runbook"

# What every runbook's first cells import anyway (start(), the cluster identity check, the
# Deployment and ReplicaSet calls): importing it while the runner still validates overlaps the
# two. kubernetes.client is lazy: CoreV1Api's module alone builds some 250 pydantic models.
# (pandas is not here: it is for tables, which can come after the change.)
WARM_UP = "import runbooks_lib.context, runbooks_lib.guard, requests\nfrom kubernetes.client import AppsV1Api, CoreV1Api"


class RunKernel:
    """A python3 kernel started early, in ``folder``, with ``env`` as its environment."""

    def __init__(self, folder: Path, cwd: Path, env: dict[str, str]) -> None:
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync
        from traitlets import CaselessStrEnum

        class IPCKernelManager(AsyncKernelManager):
            transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        self.log_path = folder / "kernel.log"
        self.manager = IPCKernelManager(kernel_name="python3", connection_file=str(folder / "kernel.json"))
        self._run_sync = run_sync
        self._log = self.log_path.open("wb")
        self._client: Any = None
        # As nbclient does for its own kernels: no IPython history file, which would keep every
        # cell's source, papermill's injected parameters included (secrets in clear).
        run_sync(self.manager.start_kernel)(env=env, cwd=str(cwd), stdout=self._log, stderr=self._log,
                                            extra_arguments=["--HistoryManager.hist_file=:memory:"])

    def warm_up(self, code: str = WARM_UP) -> None:
        """Queue imports the notebook will need; they run as soon as the kernel is up.

        A blocking client of its own, over the connection file: the manager's asynchronous
        client, started outside an event loop, left later runs in the same process waiting 60 s
        for a kernel that never answered (seen with the game day's fourth run)."""
        from jupyter_client import BlockingKernelClient

        self._client = BlockingKernelClient(connection_file=self.manager.connection_file)
        self._client.load_connection_file()
        self._client.start_channels(iopub=False, stdin=False, hb=False, control=False)
        self._client.execute(code, silent=True, store_history=False)

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the kernel at once: the record is already written, nothing is left to run."""
        if self._client is not None:
            self._client.stop_channels()
        try:
            if self._run_sync(self.manager.is_alive)():
                self._run_sync(self.manager.shutdown_kernel)(now=True)
        finally:
            self._log.close()


class TerminalEcho:
    """A file-like sink for one stream: redacted, written raw, flushed at once."""

    def __init__(self, stream: TextIO, redact: Callable[[str], str]) -> None:
        self.stream, self.redact = stream, redact

    def write(self, text: str) -> None:
        self.stream.write(self.redact(text))
        self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()


def register_engine(redact: Callable[[str], str]) -> None:
    """Register the ``runbook`` engine with papermill (once per process)."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    stdout, stderr = TerminalEcho(sys.stdout, redact), TerminalEcho(sys.stderr, redact)

    class EchoingClient(PapermillNotebookClient):
        def log_output_message(self, output: Any) -> None:
            if output.output_type == "stream":
                (stderr if output.name == "stderr" else stdout).write("".join(output.text))
            elif "text/plain" in output.get("data", {}):
                stdout.write("".join(output.data["text/plain"]).rstrip("\n") + "\n")

    class RunbookEngine(NBClientEngine):
        """papermill's nbclient engine with the echoing client (same arguments, same defaults)."""

        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False,
                                     stdout_file: Any = None, stderr_file: Any = None, start_timeout: int = 60,
                                     execution_timeout: int | None = None, **kwargs: Any) -> Any:
            kwargs = remove_args(["input_path"], **kwargs)
            safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                safe_kwargs, timeout=execution_timeout or kwargs.get("timeout"), startup_timeout=start_timeout,
                kernel_name=kernel_name, log=logger, log_output=log_output, stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
            return EchoingClient(nb_man, **final_kwargs).execute()

    papermill_engines.register(ENGINE, RunbookEngine)


def kernel_environment(home: Path, run_file: Path) -> dict[str, str]:
    """The kernel's environment: this process's, plus where the project and the run file are,
    and project-local Jupyter/IPython folders (Jupyter would write to ~ otherwise)."""
    env = {**os.environ, "RUNBOOKS_HOME": str(home), "RUNBOOK_RUN_FILE": str(run_file)}
    for var, folder in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")):
        env.setdefault(var, str(home / ".jupyter" / folder))
        Path(env[var]).mkdir(parents=True, exist_ok=True)
    return env
