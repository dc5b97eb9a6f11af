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

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

__all__ = ["RunKernel", "register_engine", "ENGINE"]

ENGINE = "runbook"

# What every runbook's first cells import anyway (start(), the cluster identity check, the
# Deployment and ReplicaSet calls): importing it while the runner still validates overlaps the
# two. Only the client's core (ApiClient, kubeconfig): the runbooks call the API by path
# (kube.call), never through the typed APIs, whose modules build some 250 pydantic models.
# psycopg too: a deploy's or a rollback's plan reads the applied migrations before it changes
# anything (a tenth of a second of imports, which was on the rollback's path to its undo).
# (pandas is not here: it is for tables, which can come after the change.)
WARM_UP = ("import runbooks_lib.run.context, runbooks_lib.run.cluster_identity, runbooks_lib.platform.cluster, requests\n"
           "import kubernetes.client.api_client, kubernetes.config\nimport psycopg")


# ipykernel_launcher's few lines, without the debugger: nobody attaches one to a headless run, and
# debugpy's imports are a tenth of a second of the kernel's boot, before the runbook can act.
# (JupyterLab's kernels are JupyterLab's own: they keep it.)
KERNEL_MAIN = """\
import sys
if sys.path and sys.path[0] == "":  # as ipykernel_launcher: the kernel puts the cwd back itself
    del sys.path[0]
sys.modules["debugpy"] = None
from ipykernel.kernelapp import launch_new_instance
launch_new_instance()
"""


class RunKernel:
    """A python3 kernel started early, in ``folder``, with ``env`` as its environment.

    The kernel process is spawned first, with the standard library only, and jupyter_client is
    imported while it boots: importing jupyter_client (zmq, asyncio, tornado) takes a quarter of
    a second, which would otherwise come before the kernel's own second of booting. The manager
    then adopts the running process (``_async_launch_kernel``, which jupyter_client documents as
    the method to override to launch kernels differently): it loads the connection file written
    here and hands the process to its local provisioner, so interrupts, liveness and shutdown
    work as for any kernel it started itself."""

    def __init__(self, folder: Path, cwd: Path, env: dict[str, str]) -> None:
        self.log_path = folder / "kernel.log"
        self._log = self.log_path.open("wb")
        self._client: Any = None
        connection_file = folder / "kernel.json"
        connection_file.write_text(json.dumps(_ipc_connection(folder)))
        connection_file.chmod(0o600)
        try:
            process = subprocess.Popen(
                # As nbclient does for its own kernels: no IPython history file, which would keep
                # every cell's source, papermill's injected parameters included (secrets in clear).
                [sys.executable, "-c", KERNEL_MAIN, "-f", str(connection_file), "--HistoryManager.hist_file=:memory:"],
                # As jupyter_client's launcher does on POSIX: its own session (interrupts go to its
                # group) and the parent's pid, so the kernel ends if this process dies.
                env={**env, "JPY_PARENT_PID": str(os.getpid())}, cwd=str(cwd), stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=self._log, start_new_session=True)
        except BaseException:
            self._log.close()
            raise
        try:
            self.manager = _adopting_manager(connection_file, process)
        except BaseException:
            process.kill()
            self._log.close()
            raise
        from jupyter_core.utils import run_sync

        self._run_sync = run_sync
        run_sync(self.manager.start_kernel)(env=env, cwd=str(cwd))

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


def _ipc_connection(folder: Path) -> dict[str, Any]:
    """A kernel connection over Unix sockets in ``folder`` (the format jupyter_client writes):
    ``<ip>-<port>`` files that only this user can reach, and a fresh signing key."""
    return {"transport": "ipc", "ip": str(folder / "kernel-ipc"), "shell_port": 1, "iopub_port": 2,
            "stdin_port": 3, "control_port": 4, "hb_port": 5, "key": secrets.token_hex(32),
            "signature_scheme": "hmac-sha256", "kernel_name": "python3"}


def _adopting_manager(connection_file: Path, process: "subprocess.Popen[bytes]") -> Any:
    """An asynchronous kernel manager for a kernel process that is already running."""
    from queue import Empty

    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_client.provisioning import LocalProvisioner
    from traitlets import CaselessStrEnum, Type

    class PromptClient(AsyncKernelClient):
        async def wait_for_ready(self, timeout: float | None = None) -> None:
            """jupyter_client's wait (kernel_info answered, IOPub connected) without its last step,
            which waits for 0.2 s of IOPub silence to drop start-up messages: nbclient matches
            every IOPub message to the cell that asked (its parent id), so a late one is ignored."""
            deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
            while True:
                self.kernel_info()
                try:
                    reply = await self.shell_channel.get_msg(timeout=1)
                except Empty:
                    reply = None
                if reply is not None and reply["msg_type"] == "kernel_info_reply":
                    try:  # any IOPub message (the request's busy status) proves IOPub is connected
                        await self.iopub_channel.get_msg(timeout=0.2)
                    except Empty:
                        pass
                    else:
                        self._handle_kernel_info_reply(reply)
                        break
                if not await self._async_is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
            while await self.iopub_channel.msg_ready():  # drop what is already there, without waiting
                await self.iopub_channel.get_msg(timeout=0)

    class AdoptingKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)
        client_factory = Type(PromptClient, klass=AsyncKernelClient)
        # The kernel was started with the connection file above, which has no CurveZMQ keys (it
        # listens on Unix sockets in the run's private folder): never provision any for it.
        transport_encryption = CaselessStrEnum(["disabled"], default_value="disabled")

        def write_connection_file(self, **kwargs: Any) -> None:
            """The kernel already reads the file this run wrote: never a second one (new key, new ports)."""

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            provisioner = self.provisioner
            if not isinstance(provisioner, LocalProvisioner):
                raise RuntimeError(f"the python3 kernel is configured with {type(provisioner).__name__}, "
                                   "not jupyter_client's local provisioner: runbooks start their kernel locally")
            # What LocalProvisioner.launch_kernel records about the process it starts.
            provisioner.process, provisioner.pid = process, process.pid
            provisioner.pgid = os.getpgid(process.pid)
            provisioner.cwd = kw.get("cwd")
            self._reconcile_connection_info(provisioner.connection_info)

    manager = AdoptingKernelManager(kernel_name="python3", connection_file=str(connection_file))
    manager.load_connection_file()
    return manager


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
