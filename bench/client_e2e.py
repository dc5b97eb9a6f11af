"""The official Kubernetes Python client's own end-to-end tests against the sandbox (issue 26).

A test suite nobody here wrote: ``kubernetes/e2e_test/`` of kubernetes-client/python, at the tag
of the installed client (``v<version>``) when the git history at hand has it, else at
``PINNED_COMMIT``. It is extracted once into ``${XDG_CACHE_HOME:-~/.cache}/veza-runbooks/client-e2e/
<ref>-<commit>/`` (never into the checkout) from ``--git-dir`` (a clone or bare copy of the
client's repository; without one, a shallow fetch of that one revision from GitHub), with a
``conftest.py`` and ``pytest.ini`` of ours next to it and nothing of theirs edited: the conftest
only makes the extracted ``kubernetes/e2e_test`` importable as ``kubernetes.e2e_test`` next to the
installed client, and ``KUBECONFIG`` is how the suite's ``base.get_e2e_configuration`` finds the
cluster (its current context; the admin's by default).

With ``--state-dir`` it runs against that running sandbox's ``kubeconfig``; without, it starts a
:class:`~runbooks_sandbox.cluster.SandboxCluster` (network namespace, forwarder, the real control
plane; no nodes, so pods stay Pending, unless ``--nodes N`` starts the node agent beside it, from
a checkout that has ``runbooks_sandbox.node``) in a temporary directory and stops it afterwards.
Several tests wait for a pod with no limit of their own, so each test has ``--timeout`` seconds
(pytest-timeout). Prints one line per test (passed / failed / skipped, with the one-line reason
and, for what did not pass, whose to fix: a test that needs a running pod of a public registry's
image, or exec / port-forward, which the sandbox's nodes do not serve, against what the sandbox
itself could fix), the totals and the run time. Run as root (the sandbox's network namespace).

    .venv/bin/python bench/client_e2e.py [--state-dir DIR | --nodes N] [--context sandbox-admin]
        [--timeout 75] [-k EXPR] [--rev REF] [--git-dir DIR] [--json FILE] [--verbose]
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("runbooks_sandbox") is None:  # a PYTHONPATH naming another checkout wins
    sys.path.insert(0, str(REPO))

SUITE_REPO = "https://github.com/kubernetes-client/python"
SUITE_PATH = "kubernetes/e2e_test"
# kubernetes-client/python master of 2026-08-17, the newest commit of the copy at hand, whose newest
# tag is v36.0.3: the installed 37.0.1 is master after v36 (master's v7.24 generated client,
# proxy_ssl_context, the informer), not v36. Used when the tag v<installed> is not at hand.
PINNED_COMMIT = "024658493d124f046fc0a9827a2a3165cf2aee28"
KNOWN_GIT_DIRS = ("/work/.mirror/kubernetes-client+python/repo",)  # where these machines' fetch tool puts its copy
ADMIN_CONTEXT = "sandbox-admin"

# What each test needs beyond the API server, from reading the suite: a pod of that image running
# (a node that can pull it) and the node's exec or port-forward. Every other test needs only the
# control plane (a Deployment or ReplicationController it creates is read back, never waited on).
NEEDS_A_NODE = {
    "test_pod_apis": ("busybox", "exec"),
    "test_pod_exec_close_channel": ("busybox", "exec (v5.channel.k8s.io)"),
    "test_exit_code": ("busybox", "exec"),
    "test_portforward_raw": ("python", "port-forward"),
    "test_portforward_http": ("nginx", "port-forward"),
    "test_metrics_utilities_integration": ("busybox", "metrics-server"),
}

CONFTEST = '''"""Written by Veza Runbooks' bench/client_e2e.py, not part of the client's suite: the extracted
kubernetes/e2e_test becomes importable as kubernetes.e2e_test next to the installed client."""
import os

import kubernetes

_HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kubernetes")
if _HERE not in kubernetes.__path__:
    kubernetes.__path__.append(_HERE)
'''
PYTEST_INI = "[pytest]\n# bench/client_e2e.py: the suite's own rootdir, away from the project's pytest settings\n"


# -- the suite ----------------------------------------------------------------------------------
def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "veza-runbooks" / "client-e2e"


def git(git_dir: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, check=False, **kw)


def resolve(git_dir: Path, ref: str) -> str | None:
    found = git(git_dir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def fetch_revision(ref: str, into: Path) -> Path:
    """A bare repository holding just ``ref`` of the client (a shallow fetch from GitHub)."""
    git_dir = into / "python.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(git_dir)], check=True)
    fetched = git(git_dir, "fetch", "--quiet", "--depth=1", SUITE_REPO, ref, text=True)
    if fetched.returncode != 0:
        raise SystemExit(f"cannot fetch {ref} of {SUITE_REPO}: {fetched.stderr.strip()}\n"
                         "give --git-dir (a clone of it) instead")
    git(git_dir, "update-ref", "refs/fetched", "FETCH_HEAD")
    return git_dir


def choose_revision(git_dir: Path | None, rev: str | None, installed: str) -> tuple[str, str | None]:
    """(ref, commit): ``rev``, else the installed client's tag, else the pinned commit; the commit is
    None when there is no git directory to resolve it in (a fetch will)."""
    candidates = [rev] if rev else [f"v{installed}", PINNED_COMMIT]
    if git_dir is None:
        return candidates[0] if rev else PINNED_COMMIT, None
    for ref in candidates:
        commit = resolve(git_dir, ref)
        if commit:
            return ref, commit
    raise SystemExit(f"{git_dir} has none of {', '.join(candidates)}")


def extract(git_dir: Path, commit: str, dest: Path) -> None:
    """``SUITE_PATH`` at ``commit`` into ``dest`` (blob by blob: a partial copy may lack other files)."""
    listing = git(git_dir, "ls-tree", "-r", "-z", commit, SUITE_PATH)
    if listing.returncode != 0 or not listing.stdout:
        raise SystemExit(f"no {SUITE_PATH} at {commit}: {listing.stderr.decode().strip()}")
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        for entry in listing.stdout.split(b"\0"):
            if not entry:
                continue
            meta, path = entry.decode().split("\t", 1)
            _mode, kind, blob = meta.split()
            if kind != "blob":
                continue
            content = git(git_dir, "cat-file", "blob", blob)
            if content.returncode != 0:
                raise SystemExit(f"{path} at {commit} is missing from {git_dir}")
            target = tmp / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.stdout)
        (tmp / "conftest.py").write_text(CONFTEST)
        (tmp / "pytest.ini").write_text(PYTEST_INI)
        (tmp / "REVISION").write_text(f"{SUITE_REPO} {commit}\n")
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def slot(ref: str, commit: str) -> str:
    """The cache folder's name: ``v37.0.1-<commit12>``, or the commit alone for a commit."""
    if re.fullmatch(r"[0-9a-f]{7,40}", ref):
        return commit[:12]
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', ref)}-{commit[:12]}"


def suite(git_dir: Path | None, rev: str | None) -> tuple[Path, str, str]:
    """(the suite's root, its ref, its commit), extracted once per revision."""
    installed = importlib.metadata.version("kubernetes")
    if git_dir is None:
        git_dir = next((Path(d) for d in KNOWN_GIT_DIRS if Path(d, "HEAD").exists()), None)
    ref, commit = choose_revision(git_dir, rev, installed)
    cache_root().mkdir(parents=True, exist_ok=True)
    if commit is None:  # no copy at hand: a cached extraction of that ref, else a fetch from GitHub
        pattern = slot(ref, ref) if re.fullmatch(r"[0-9a-f]{40}", ref) else f"{slot(ref, '')}*"
        cached = [d for d in sorted(cache_root().glob(pattern)) if (d / "REVISION").exists()]
        if cached:
            return cached[0], ref, (cached[0] / "REVISION").read_text().split()[1]
        with tempfile.TemporaryDirectory() as tmp:
            git_dir = fetch_revision(ref, Path(tmp))
            commit = resolve(git_dir, "refs/fetched") or ""
            return _extracted(git_dir, ref, commit), ref, commit
    return _extracted(git_dir, ref, commit), ref, commit


def _extracted(git_dir: Path, ref: str, commit: str) -> Path:
    dest = cache_root() / slot(ref, commit)
    if not (dest / "REVISION").exists():
        extract(git_dir, commit, dest)
    return dest


# -- the cluster --------------------------------------------------------------------------------
def kubeconfig_for(path: Path, context: str, tmp: Path) -> Path:
    """``path`` when ``context`` is its current context, else a copy (0600, in ``tmp``) where it is:
    the suite loads the current context."""
    if not path.exists():
        raise SystemExit(f"no kubeconfig at {path}: is the sandbox up?")
    doc = yaml.safe_load(path.read_text())
    names = [c["name"] for c in doc.get("contexts") or []]
    if context not in names:
        raise SystemExit(f"{path} has no context {context!r} (contexts: {', '.join(names)})")
    if doc.get("current-context") == context:
        return path
    doc["current-context"] = context
    copy = tmp / "kubeconfig"
    copy.touch(mode=0o600)
    copy.write_text(yaml.safe_dump(doc))
    return copy


def start_nodes(cluster: Any, count: int, state: Path) -> Any:
    """The node agent's ``count`` nodes beside ``cluster``, its threads inside the cluster network."""
    try:
        from runbooks_sandbox.node import NodeAgent, RuntimeSettings
    except ImportError:
        raise SystemExit("--nodes: this checkout has no node agent (runbooks_sandbox.node); "
                         "PYTHONPATH=<a checkout that has it> runs that one") from None
    agent = NodeAgent(cluster.control_plane(), cluster.network, nodes=count, settings=RuntimeSettings(),
                      state_dir=state)
    cluster.network.call(agent.start, timeout=90)
    return agent


def observer(kubeconfig: Path) -> Any:
    """A client that sees the whole cluster: the admin's context when the kubeconfig has it (the
    suite may run as someone who cannot list everything), else its current one."""
    from kubernetes import config

    contexts = [c["name"] for c in yaml.safe_load(kubeconfig.read_text()).get("contexts") or []]
    return config.new_client_from_config(str(kubeconfig), context=ADMIN_CONTEXT if ADMIN_CONTEXT in contexts else None)


def cluster_facts(kubeconfig: Path) -> tuple[str, list[str]]:
    """The server's version and its Nodes (``name Ready``)."""
    from kubernetes import client

    api = observer(kubeconfig)
    try:
        nodes = []
        for node in client.CoreV1Api(api).list_node().items:
            ready = [c.status for c in node.status.conditions or [] if c.type == "Ready"]
            nodes.append(f"{node.metadata.name} {'Ready' if ready == ['True'] else 'NotReady'}")
        return client.VersionApi(api).get_code().git_version, nodes
    finally:
        api.close()


def objects(kubeconfig: Path) -> dict[str, str]:
    """What the cluster holds of the kinds the suite makes, ``kind namespace/name`` -> a pod's state
    (what is being deleted left out): compared before and after the run, what the suite left behind."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = observer(kubeconfig)
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    listings = {
        "namespace": core.list_namespace, "pod": core.list_pod_for_all_namespaces,
        "configmap": core.list_config_map_for_all_namespaces, "service": core.list_service_for_all_namespaces,
        "replicationcontroller": core.list_replication_controller_for_all_namespaces,
        "deployment": apps.list_deployment_for_all_namespaces, "daemonset": apps.list_daemon_set_for_all_namespaces,
        "job": batch.list_job_for_all_namespaces, "role": client.RbacAuthorizationV1Api(api).list_role_for_all_namespaces,
        "apiservice": client.ApiregistrationV1Api(api).list_api_service,
    }
    found = {}
    try:
        for kind, call in listings.items():
            try:
                items = call().items
            except ApiException:  # not this person's to list: not compared
                continue
            for item in items:
                meta = item.metadata
                if meta.deletion_timestamp is None:
                    key = f"{kind} {meta.namespace + '/' if meta.namespace else ''}{meta.name}"
                    found[key] = pod_state(item) if kind == "pod" else ""
    finally:
        api.close()
    return found


def pod_state(pod: Any) -> str:
    """``Pending: Unschedulable: 0/0 nodes are available...`` or ``Pending: ErrImagePull: ...``: why
    a pod the suite waited for never ran."""
    status = pod.status
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return shorten(f"{status.phase}: {condition.reason}: {condition.message}", 120)
    for container in status.container_statuses or []:
        waiting = container.state.waiting if container.state else None
        if waiting:
            return shorten(f"{status.phase}: {waiting.reason}: {waiting.message or ''}", 120)
    return status.phase or ""


# -- the run ------------------------------------------------------------------------------------
def run_pytest(root: Path, kubeconfig: Path, args: argparse.Namespace, junit: Path, log: Path) -> int:
    command = [sys.executable, "-m", "pytest", SUITE_PATH, f"--timeout={args.timeout}",
               "--timeout-method=signal", f"--junitxml={junit}", "-p", "no:cacheprovider",
               "-v" if args.verbose else "-q", "-rN"]
    if args.k:
        command += ["-k", args.k]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    if args.verbose:
        return subprocess.run(command, cwd=root, env=env, check=False).returncode
    with log.open("w") as out:
        return subprocess.run(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                              check=False).returncode


def one_line(message: str, text: str) -> str:
    """The failure's reason in a line: an API error's code, reason and Status message, else the
    message's first line; then where in the suite it happened (file, line, source)."""
    api = re.search(r"(\w*Exception): \((\d+)\)\s*Reason: ([^\n]*)", message)
    if api:
        detail = ""
        body = re.search(r"HTTP response body: (\{.*\})", message) or re.search(r"HTTP response body: (\{.*\})", text)
        if body:
            try:
                detail = json.loads(body.group(1)).get("message", "")
            except ValueError:
                pass
        reason = f"{api.group(1)} {api.group(2)} {api.group(3).strip()}" + (f": {detail}" if detail else "")
    else:
        reason = next((line.strip() for line in message.splitlines() if line.strip()), "")
    where = innermost_suite_line(text)
    return shorten(reason) + (f" (at {where})" if where else "")


def innermost_suite_line(text: str) -> str:
    """``test_client.py:394 `self.assertTrue(time.time() < timeout)``` from a pytest traceback: the
    deepest frame in one of the suite's test files."""
    found, source = "", ""
    for line in text.splitlines():
        if line.startswith(">"):
            source = line[1:].strip()
        location = re.match(r"^(?:\S*/)?(test_\w+\.py):(\d+): ", line)
        if location:
            found = f"{location.group(1)}:{location.group(2)}" + (f" `{source}`" if source else "")
            source = ""
    return found


def shorten(text: str, width: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def results(junit: Path) -> list[dict[str, Any]]:
    rows = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")
        module, cls = (parts[-2], parts[-1]) if len(parts) >= 2 else (parts[-1], "")
        name = case.get("name", "")
        outcome, reason = "passed", ""
        for tag, word in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            element = case.find(tag)
            if element is not None:
                outcome, reason = word, one_line(element.get("message") or "", element.text or "")
                break
        rows.append({"test": f"{module}.py::{cls}::{name}", "method": name, "result": outcome,
                     "reason": reason, "seconds": round(float(case.get("time") or 0), 1),
                     "whose": whose(name, outcome, reason)})
    return rows


def whose(method: str, outcome: str, reason: str) -> str:
    """Who could make a test that did not pass pass: nobody here when it waited for a pod of a public
    registry's image (or needs a node's exec, port-forward, metrics-server); else the sandbox."""
    if outcome == "passed":
        return ""
    need = NEEDS_A_NODE.get(method)
    waited = any(word in reason for word in ("Timeout", "timeout", "Pending", "not negotiated"))
    if need and waited:
        image, feature = need
        return f"inherent: needs image {image} from a public registry (then {feature})"
    if outcome == "skipped":
        return "skipped by the suite"
    return "sandbox"


# -- the report ---------------------------------------------------------------------------------
def report(rows: list[dict[str, Any]], left: dict[str, str], kept: bool) -> dict[str, int]:
    width = max((len(r["test"]) for r in rows), default=20)
    print(f"\n{'test':<{width}}  {'result':<7} {'s':>5}  reason")
    for r in rows:
        print(f"{r['test']:<{width}}  {r['result']:<7} {r['seconds']:>5.1f}  {r['reason']}")
        if r["whose"]:
            print(f"{'':<{width}}  {'':<7} {'':>5}  -> {r['whose']}")
    totals = {word: sum(r["result"] == word for r in rows) for word in ("passed", "failed", "error", "skipped")}
    plane = [r for r in rows if r["method"] not in NEEDS_A_NODE]
    inherent = sum(r["whose"].startswith("inherent") for r in rows)
    print(f"\ntotal {len(rows)}: " + ", ".join(f"{n} {w}" for w, n in totals.items()))
    print(f"needing only the control plane: {sum(r['result'] == 'passed' for r in plane)} of {len(plane)} passed; "
          f"not passed for a public image (inherent): {inherent}; "
          f"for the sandbox to fix: {sum(r['whose'] == 'sandbox' for r in rows)}")
    if left:
        print(f"left behind by the suite ({len(left)}; it deletes what it made only when a test passes"
              + ("; still in that sandbox, `kubectl delete` them" if kept else "; gone with this sandbox") + "):")
        for key, state in left.items():
            print(f"  {key}" + (f"  ({state})" if state else ""))
    return totals


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, help="a running sandbox's state directory (its kubeconfig); "
                        "default: start a SandboxCluster of our own and stop it afterwards")
    parser.add_argument("--context", default=ADMIN_CONTEXT, help="the kubeconfig context the suite uses")
    parser.add_argument("--timeout", type=int, default=75, help="seconds for each test (several wait for a pod forever)")
    parser.add_argument("--nodes", type=int, default=0, help="without --state-dir: also start the node agent "
                        "with that many nodes (its pods run only the sandbox catalog's images)")
    parser.add_argument("-k", help="pytest -k expression: run only the tests it selects")
    parser.add_argument("--rev", help=f"the suite's revision (default: v<installed client>, else {PINNED_COMMIT[:12]})")
    parser.add_argument("--git-dir", type=Path, help="a clone of kubernetes-client/python (default: a known copy, "
                        "else a shallow fetch from GitHub)")
    parser.add_argument("--json", type=Path, help="also write the results there")
    parser.add_argument("--verbose", action="store_true", help="show pytest's own output as it runs")
    return parser.parse_args()


def main() -> int:
    args = arguments()
    if args.nodes and args.state_dir:
        raise SystemExit("--nodes starts nodes beside a sandbox of our own: not with --state-dir")
    root, ref, commit = suite(args.git_dir, args.rev)
    installed = importlib.metadata.version("kubernetes")
    at = f"{ref} ({commit[:12]})" if ref != PINNED_COMMIT else f"commit {commit[:12]} (pinned: no tag v{installed} at hand)"
    print(f"suite: {SUITE_REPO} {SUITE_PATH} at {at}; installed client {installed}; in {root}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally below stops the sandbox
    tmp = Path(tempfile.mkdtemp(prefix="vz-client-e2e-"))
    cluster, agent, seconds, began = None, None, {}, time.monotonic()
    try:
        if args.state_dir:
            kubeconfig = (args.state_dir / "kubeconfig").resolve()  # the suite runs in another folder
        else:
            from runbooks_sandbox.cluster import SandboxCluster

            cluster = SandboxCluster(tmp / "state")
            t = time.monotonic()
            kubeconfig = Path(cluster.start({})["kubeconfig"])
            if args.nodes:
                agent = start_nodes(cluster, args.nodes, tmp / "state" / "nodes")
            seconds["sandbox start"] = time.monotonic() - t
        kubeconfig, original = kubeconfig_for(kubeconfig, args.context, tmp), kubeconfig
        (version, nodes), before = cluster_facts(original), objects(original)
        what = ("" if args.state_dir else f" (a SandboxCluster with {args.nodes} nodes of the node agent)"
                if args.nodes else " (a bare SandboxCluster: no nodes)")
        print(f"cluster: {version}, context {args.context}, per-test timeout {args.timeout} s{what}; "
              f"nodes: {', '.join(nodes) or 'none'}", flush=True)
        t = time.monotonic()
        code = run_pytest(root, kubeconfig, args, tmp / "junit.xml", tmp / "pytest.log")
        seconds["suite"] = time.monotonic() - t
        if not (tmp / "junit.xml").exists() or code not in (0, 1):
            log = (tmp / "pytest.log").read_text() if (tmp / "pytest.log").exists() else ""
            print(log[-4000:])
            if not (tmp / "junit.xml").exists():
                raise SystemExit(f"pytest ended {code} without results")
        rows = results(tmp / "junit.xml")
        left = {key: state for key, state in sorted(objects(original).items()) if key not in before}
        totals = report(rows, left, kept=cluster is None)
    finally:
        if cluster is not None:
            t = time.monotonic()
            try:
                if agent is not None:
                    cluster.network.call(agent.stop, timeout=60)
            finally:
                cluster.stop()
            seconds["sandbox stop"] = time.monotonic() - t
        shutil.rmtree(tmp, ignore_errors=True)
    seconds["total"] = time.monotonic() - began
    print("run time: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    if args.json:
        args.json.write_text(json.dumps({"suite": {"repo": SUITE_REPO, "ref": ref, "commit": commit},
                                         "client": installed, "server": version, "nodes": nodes, "tests": rows,
                                         "totals": totals, "left_behind": left, "seconds": seconds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
