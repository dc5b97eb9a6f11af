"""Fixtures for the sandbox API server tests: a real server on a free port, kubectl, the client."""
from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from runbooks_sandbox.apiserver import ApiServer

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One API server (with controllers when present, instant pod runtime) for the session."""
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    server = ApiServer(port=0, kubeconfig=kubeconfig)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kubeconfig(apiserver: ApiServer) -> Path:
    assert apiserver.kubeconfig is not None
    return apiserver.kubeconfig


@pytest.fixture
def namespace(apiserver: ApiServer) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (with everything in it)."""
    from runbooks_sandbox.models.resources import NAMESPACES

    name = f"t-{uuid.uuid4().hex[:8]}"
    apiserver.store.create(NAMESPACES, None, {"metadata": {"name": name}})
    yield name
    try:
        apiserver.store.delete(NAMESPACES, None, name)
    except Exception:
        pass  # the test deleted it


@pytest.fixture(scope="session")
def kubectl_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh discovery cache: kubectl caches discovery per host:port."""
    return tmp_path_factory.mktemp("kubectl-cache")


Kubectl = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def kubectl_command(kubeconfig: Path, kubectl_cache: Path) -> list[str]:
    """kubectl with the sandbox's kubeconfig and a fresh cache, for tests that run it themselves."""
    return [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(kubectl_cache)]


@pytest.fixture
def kubectl(kubectl_command: list[str], namespace: str) -> Kubectl:
    """Run the real kubectl against the sandbox in the test's namespace; check=True by default."""

    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 60,
            namespaced: bool = True) -> subprocess.CompletedProcess:
        command = list(kubectl_command)
        if namespaced:
            command += ["-n", namespace]
        result = subprocess.run(command + list(args), input=input, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    return run


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path):  # type: ignore[no-untyped-def]
    """The official kubernetes client, configured from the sandbox's kubeconfig."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="session")
def process_cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(server, runtime, client): an API server whose pods are real processes (the sandbox's runtime)."""
    from kubernetes import config

    from runbooks_sandbox.runtime.pods import ProcessRuntime

    runtime = ProcessRuntime(time_scale=0.1, state_dir=str(tmp_path_factory.mktemp("pods")))
    server = ApiServer(port=0, kubeconfig=tmp_path_factory.mktemp("kube") / "config", runtime=runtime)
    server.start()
    api = config.new_client_from_config(config_file=str(server.kubeconfig))
    yield server, runtime, api
    api.close()
    server.stop()
