"""The pinned control-plane versions and the binaries ``make controlplane`` built for them.

controlplane/versions.env is the one place the versions live; scripts/build-controlplane.sh
sources it and builds into a cache outside the checkout. This module reads the same file and
finds the same folder, then checks that every binary is there *and* reports the pinned version:
a binary of another release, left in the folder or put there by hand, would run a cluster the
runbooks were not written against, and nothing would say so. There is no fallback to a
``kubectl`` or ``etcd`` on PATH (Debian's kubectl is years older): anything missing or wrong is
:class:`ControlPlaneNotBuilt`, whose message names ``make controlplane``.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..servers.ports import ServerError

__all__ = [
    "VERSIONS_FILE",
    "BINARIES",
    "ControlPlaneNotBuilt",
    "Versions",
    "Binaries",
    "read_versions",
    "cache_root",
    "bin_dir",
    "binaries",
]

PROJECT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = PROJECT / "controlplane" / "versions.env"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd")
BUILD_HINT = "run `make controlplane` (scripts/build-controlplane.sh; minutes on a cold cache, instant after)"


class ControlPlaneNotBuilt(ServerError):
    """A control-plane binary is missing or is not the pinned version; ``make controlplane`` fixes it."""


@dataclass(frozen=True)
class Versions:
    """What controlplane/versions.env pins (``kubernetes`` and ``etcd`` as ``v1.37.2``, ``v3.7.3``)."""

    kubernetes: str
    etcd: str
    values: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        """The cache folder's name, as the build script spells it: ``<k8s>-<etcd>``."""
        return f"{self.kubernetes}-{self.etcd}"


def read_versions(path: Path = VERSIONS_FILE) -> Versions:
    """Parse versions.env (KEY=VALUE lines, ``#`` comments); KUBERNETES_VERSION and ETCD_VERSION required.

    A line the shell would read differently (quotes, spaces) is refused rather than guessed at:
    the build script sources the same file, and both must agree on the versions.
    """
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ControlPlaneNotBuilt(f"cannot read the pinned control-plane versions: {e}") from e
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier() or any(c in value for c in " \t'\"#$`"):
            raise ControlPlaneNotBuilt(f"{path}:{number}: not a plain KEY=VALUE line: {raw!r}")
        values[key] = value
    missing = [k for k in ("KUBERNETES_VERSION", "ETCD_VERSION") if not values.get(k)]
    if missing:
        raise ControlPlaneNotBuilt(f"{path} does not set {' and '.join(missing)}")
    return Versions(values["KUBERNETES_VERSION"], values["ETCD_VERSION"], values)


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """``${VEZA_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/veza-runbooks/controlplane}``.

    Empty variables count as unset, as ``${VAR:-...}`` treats them in the build script.
    """
    env = os.environ if environ is None else environ
    if env.get("VEZA_CONTROLPLANE_CACHE"):
        return Path(env["VEZA_CONTROLPLANE_CACHE"])
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "veza-runbooks" / "controlplane"


def bin_dir(versions: Versions | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The folder the build script puts the binaries in (``--print-bindir``), built or not."""
    return cache_root(environ) / (versions or read_versions()).label / "bin"


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the five checked binaries, and the versions they report."""

    bin_dir: Path
    versions: Versions

    def path(self, name: str) -> str:
        if name not in BINARIES:
            raise KeyError(f"{name} is not a control-plane binary ({', '.join(BINARIES)})")
        return str(self.bin_dir / name)

    @property
    def kube_apiserver(self) -> str:
        return self.path("kube-apiserver")

    @property
    def kube_controller_manager(self) -> str:
        return self.path("kube-controller-manager")

    @property
    def kube_scheduler(self) -> str:
        return self.path("kube-scheduler")

    @property
    def kubectl(self) -> str:
        return self.path("kubectl")

    @property
    def etcd(self) -> str:
        return self.path("etcd")


def _expected_line(name: str, versions: Versions) -> tuple[list[str], str]:
    """The version command of a binary and the exact line it must print (as the build script checks)."""
    if name == "kubectl":
        return ["version", "--client"], f"Client Version: {versions.kubernetes}"
    if name == "etcd":
        return ["--version"], f"etcd Version: {versions.etcd.removeprefix('v')}"
    return ["--version"], f"Kubernetes {versions.kubernetes}"


def _version_problem(path: Path, name: str, versions: Versions) -> str | None:
    """None when ``path`` runs and reports the pinned version, else what is wrong."""
    if not path.is_file():
        return f"{path} is missing"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable"
    args, want = _expected_line(name, versions)
    try:
        out = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL, env={"PATH": os.defpath, "HOME": "/nonexistent"})
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{path} does not run ({e})"
    lines = [line.strip() for line in out.stdout.splitlines()]
    if want in lines:
        return None
    said = next((line for line in lines if line), None) or \
        next(iter(out.stderr.strip().splitlines()[-1:]), f"nothing (exit {out.returncode})")
    return f"{path} reports {said!r}, controlplane/versions.env pins {want!r}"


# Checked binaries by (path, size, mtime): `--version` of five binaries costs ~0.5 s, and a test
# module or a sandbox starts several control planes from one process.
_checked: dict[tuple[str, int, int], bool] = {}


def _fingerprint(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_size, st.st_mtime_ns)


def binaries(directory: Path | str | None = None, versions: Versions | None = None) -> Binaries:
    """The five binaries in ``directory`` (default: the build script's bin dir), each checked.

    Raises :class:`ControlPlaneNotBuilt` naming every missing or wrong binary and ``make
    controlplane``; never looks anywhere else.
    """
    versions = versions or read_versions()
    folder = Path(directory) if directory is not None else bin_dir(versions)
    paths = {name: folder / name for name in BINARIES}
    to_check = [name for name, p in paths.items() if (fp := _fingerprint(p)) is None or fp not in _checked]
    with ThreadPoolExecutor(max_workers=len(BINARIES)) as pool:
        problems = dict(zip(to_check, pool.map(lambda n: _version_problem(paths[n], n, versions), to_check)))
    wrong = [problem for problem in problems.values() if problem]
    if wrong:
        raise ControlPlaneNotBuilt(
            f"the Kubernetes control plane {versions.kubernetes} / etcd {versions.etcd} is not built in "
            f"{folder}: {'; '.join(wrong)}. To build it, {BUILD_HINT}")
    for name in to_check:
        fp = _fingerprint(paths[name])
        if fp is not None:
            _checked[fp] = True
    return Binaries(folder, versions)
