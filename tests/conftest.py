"""Fixtures shared by the library's tests."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway copy of parameters/ (and a fake live sandbox env) as RUNBOOKS_HOME."""
    home = tmp_path / "home"
    shutil.copytree(PROJECT / "parameters", home / "parameters")
    (home / ".sandbox").mkdir()
    (home / ".sandbox" / "env").write_text(
        "KUBECONFIG=/nonexistent/kubeconfig\n"
        "CLUSTER_UID=00000000-test-uid\n"
        "VAULT_ADDR=http://127.0.0.1:1\n"
        "VAULT_TOKEN=dev-token-not-a-secret\n"
        "PROMETHEUS_URL=http://127.0.0.1:1\n"
    )
    monkeypatch.setenv("RUNBOOKS_HOME", str(home))
    monkeypatch.delenv("RUNBOOKS_SANDBOX_ENV", raising=False)
    return home


@pytest.fixture
def jupyter_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep Jupyter's and IPython's state out of $HOME."""
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        monkeypatch.setenv(var, os.environ.get(var) or str(tmp_path / var.lower()))


# -- a shell that sourced a sandbox's env is not the tests' sandbox --------------------------------
# The README has people run `. .sandbox/env` for kubectl. Its variables (stack.py writes them) would
# reach every process the tests start: sandbox pods then look for a Redis or a database of a sandbox
# that may be stopped (answering 503), kubectl for another cluster. The tests start their own.
_SANDBOX_SHELL_VARIABLES = ("KUBECONFIG", "CLUSTER_UID", "NAMESPACE", "VAULT_ADDR", "VAULT_TOKEN", "PROMETHEUS_URL",
                            "REDIS_URL", "DATABASE_URL", "TRAFFIC_URL", "NOTIFY_URL", "PG_PRIMARY_DSN",
                            "PG_STANDBY_DSN", "BACKUP_URL", "WAL_ARCHIVE_URL", "STATE_DIR")


def pytest_configure(config: pytest.Config) -> None:
    for name in _SANDBOX_SHELL_VARIABLES:
        os.environ.pop(name, None)
    # The ledger's key file (records.trust.FileKey) lives outside the records folder, by default in
    # ~/.config: the tests, and the runs they start, use one of their own.
    if "RUNBOOKS_LEDGER_KEY" not in os.environ:
        import tempfile

        os.environ["RUNBOOKS_LEDGER_KEY"] = os.path.join(tempfile.mkdtemp(prefix="runbooks-tests-"), "ledger.key")


# -- tests leave the checkout's outputs/ alone (issue 10) -------------------------------------
# Every test writes its records, journals and fingerprints under a temporary folder
# (RUNBOOKS_RECORDS_URL, RUNBOOKS_HOME or RUNBOOKS_FINGERPRINTS); a test that forgets fails the
# session here, naming what it left.

def _outputs_listing() -> set[str]:
    outputs = PROJECT / "outputs"
    return {p.relative_to(outputs).as_posix() for p in outputs.rglob("*")} if outputs.is_dir() else set()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._outputs_before = _outputs_listing()  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = getattr(session.config, "_outputs_before", None)
    if before is None:
        return
    left = sorted(_outputs_listing() - before)
    if left:
        session.config.get_terminal_writer().line(
            f"tests wrote into the checkout's outputs/ (use a temporary folder): {', '.join(left[:10])}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- two workers (pytest-xdist; `make test` runs -n 2) -----------------------------------------
# The runbook scenarios run in two groups, each on one sandbox in a set order (tests/runbooks/
# groups.py): each group is one unit of work on one worker; the sandbox server tests share
# session-scoped servers, so they are another.
# Every other test goes to whichever worker is free. (xdist's own `--dist loadgroup` does not
# group under pytest 9: it renames node ids through an attribute pytest 9 no longer reads.)
# Every test that starts a cluster (the real control plane, in a network namespace) is in that
# unit, so that one starts at a time.
_GROUPS = {"tests/sandbox/": "sandbox-servers", "tests/security/test_sandbox_endpoints.py": "sandbox-servers"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own scheduler factory
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class SharedSandboxes(LoadScopeScheduling):
        """Units of work: one per shared sandbox, one per other test. Largest units go first,
        so the two sandboxes start on different workers."""

        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith("tests/runbooks/test_"):  # one unit per scenario group, each with its sandbox
                from .runbooks.groups import group_of

                return "runbooks-" + group_of(nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py"))
            return next((group for prefix, group in _GROUPS.items() if nodeid.startswith(prefix)), nodeid)

    return SharedSandboxes(config, log)


# -- a real OpenBao with the sandbox's people (alice, bob, carol), for approvals and identity --------

@pytest.fixture(scope="module")
def vault_people(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real OpenBao dev server (0.2 s) seeded as `sandbox up` seeds it: secret/veza/*, the transit
    keys, and the people with their policies. Yields its address, the root token and each person's
    login token (userpass)."""
    from runbooks_lib.platform.vault import login_userpass
    from runbooks_sandbox.servers import OpenBaoServer
    from runbooks_sandbox.servers.people import read_passwords, seed_people

    state = tmp_path_factory.mktemp("openbao")
    server = OpenBaoServer(state).start()
    try:
        server.seed(("sandbox", "production"))
        seed_people(server.client(), state)
        passwords = read_passwords(state)
        # A login registers its token as a secret, persisted beside the records: the fixture has no
        # records folder of its own, so without this the tokens' fingerprints went to the checkout's
        # outputs/ (seen on a fresh clone's make test).
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RUNBOOKS_FINGERPRINTS", str(state / "fingerprints"))
            tokens = {name: login_userpass(server.address, name, password).reveal()
                      for name, password in passwords.items()}
        yield {"address": server.address, "root": server.root_token, "tokens": tokens, "passwords": passwords}
    finally:
        server.stop()
