"""TCP forwarders between the host's 127.0.0.1 and addresses inside the cluster network's namespace.

Two directions, as :class:`Rule` says:

- **inward**: listen on the host's ``127.0.0.1:P``, connect to ``IP:port`` inside the namespace
  (the API server, Prometheus, the load generator's report: what a person's tools reach);
- **outward**: listen on an address inside the namespace, connect to the host's ``127.0.0.1:P``
  (PostgreSQL and Redis, which stay on the host; see the package doc for why the inside address
  is the namespace's own ``127.0.0.1:P``, the same port).

One asyncio loop relays every connection (no process, no thread per connection): a socket
belongs to the namespace of the thread that creates it, so the inside sockets (outward listeners,
inward upstream connections) are created by a :class:`~.netns.NamespaceThread` that entered the
namespace once, and handed to the loop. Half-closes are passed on (a client's shutdown(SHUT_WR)
becomes one toward the server, and the connection ends when both directions have), a reset is
passed on as a reset, and flow control holds a fast sender when the other side does not read.

Run it as its own process (what the sandbox does): ``python -m runbooks_sandbox.network.forward
--state-dir D`` relays the rules of ``D/network/forwards.json``, reloads them when the file changes
(SIGHUP makes it at once), and reports in ``D/network/forwarder.json`` what each rule listens on.
:class:`ForwarderProcess` starts it, adds and removes rules, and stops it by its PID file. Why a
process of its own rather than a part of the supervisor: it is the one process that straddles
both namespaces, while the supervisor, the control plane and the pods run inside; a person's
connections to the API server and Prometheus must not stall behind the supervisor's Python work
(its own GIL, on the other core), nor go down when the supervisor crashes; and ``down`` stops it
like any server, by PID. :class:`Forwarder` is the same thing embeddable (tests, a bench).

What it costs (``python -m runbooks_sandbox.network.bench``, four runs on the 2-core machine
while other test suites ran, load 6-11): a request on a kept-alive connection, p50 0.15-0.19 ms
against 0.05-0.10 ms directly inside the namespace (+0.06-0.14 ms; means +0.13-0.33 ms), and
80-90 µs of the forwarder's CPU; a request on a new connection, p50 1.1-2.2 ms against 0.3-0.75
(+0.7-1.4 ms: accepting and connecting take loop turns); 50 concurrent kept-alive connections,
4,500-10,000 requests/s through it (9,000-22,000 directly); one bulk transfer 350-1,300 MB/s.
Far beyond what a person's tools and the pods' database traffic ask.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import errno
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from ..servers.ports import LOOPBACK, free_port, log_tail
from .errors import ForwardError, NetworkError
from .ipam import AddressBook, write_json_atomically
from .namespace import FORWARDER_MODULE, ClusterNetwork
from .netns import NamespaceThread

__all__ = ["Rule", "Forwarder", "ForwarderProcess", "main"]

Direction = Literal["inward", "outward"]
Address = tuple[str, int]
_LOOPBACK_NET = ipaddress.IPv4Network("127.0.0.0/8")


def _ipv4(value: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise ForwardError(f"{what} {value!r} is not an IPv4 address") from None


@dataclass(frozen=True)
class Rule:
    """One forwarding: connections to ``listen`` are relayed to ``target``.

    ``inward``: ``listen`` is on the host (loopback only), ``target`` inside the namespace.
    ``outward``: ``listen`` is inside the namespace, ``target`` on the host (loopback only).
    A listen port 0 is chosen free when the rule is put in place.
    """

    name: str
    direction: Direction
    listen_host: str
    listen_port: int
    target_host: str
    target_port: int

    @classmethod
    def inward(cls, name: str, target_ip: str, target_port: int, host_port: int = 0,
               host: str = LOOPBACK) -> Rule:
        """Host ``host:host_port`` -> inside ``target_ip:target_port``."""
        return cls(name, "inward", host, host_port, target_ip, target_port).validated()

    @classmethod
    def outward(cls, name: str, host_port: int, listen_ip: str = LOOPBACK, listen_port: int | None = None,
                host: str = LOOPBACK) -> Rule:
        """Inside ``listen_ip:listen_port`` (default: the same port) -> host ``host:host_port``."""
        return cls(name, "outward", listen_ip, host_port if listen_port is None else listen_port,
                   host, host_port).validated()

    def validated(self) -> Rule:
        if not self.name or len(self.name) > 100:
            raise ForwardError(f"rule name {self.name!r}: give a short, non-empty name")
        if self.direction not in ("inward", "outward"):
            raise ForwardError(f"rule {self.name}: direction {self.direction!r} is neither inward nor outward")
        for port, what in ((self.listen_port, "listen_port"), (self.target_port, "target_port")):
            if not isinstance(port, int) or not (0 if what == "listen_port" else 1) <= port <= 65535:
                raise ForwardError(f"rule {self.name}: {what} {port!r} is not a TCP port")
        listen = _ipv4(self.listen_host, f"rule {self.name}: listen_host")
        target = _ipv4(self.target_host, f"rule {self.name}: target_host")
        host_side = listen if self.direction == "inward" else target
        if host_side not in _LOOPBACK_NET:
            raise ForwardError(
                f"rule {self.name}: the host side {host_side} must be a loopback address (127.0.0.1): "
                "on this machine nothing of the sandbox may listen on, or reach, other host addresses")
        return self

    @property
    def listen(self) -> Address:
        return self.listen_host, self.listen_port

    @property
    def target(self) -> Address:
        return self.target_host, self.target_port

    def describe(self) -> str:
        sides = ("host", "namespace") if self.direction == "inward" else ("namespace", "host")
        return (f"{self.name}: {sides[0]} {self.listen_host}:{self.listen_port} -> "
                f"{sides[1]} {self.target_host}:{self.target_port}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rule:
        try:
            return cls(**{k: data[k] for k in ("name", "direction", "listen_host", "listen_port",
                                               "target_host", "target_port")}).validated()
        except (KeyError, TypeError) as e:
            raise ForwardError(f"a forwarding rule is malformed ({e}): {data!r}") from None


def _loop_between(rule: Rule, others: Iterable[Rule]) -> Rule | None:
    """A rule that would send ``rule``'s connections back to its own listener (an endless relay)."""
    for other in others:
        if other.direction == rule.direction:
            continue
        inward, outward = (rule, other) if rule.direction == "inward" else (other, rule)
        if inward.target == outward.listen and outward.target_port == inward.listen_port:
            return other
    return None


# -- one relayed connection -----------------------------------------------------------------------

class _Side(asyncio.Protocol):
    """One end of a relayed connection; what it reads is written to the other end."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.eof = False  # this end sent EOF (its reading half is done)
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.closed:
            peer.transport.write(data)
            self.link.count(self, len(data))

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.closed:
            if peer.eof:  # both directions are done
                self.link.close()
                return False
            if peer.transport.can_write_eof():
                peer.transport.write_eof()  # sent once the buffered data is out
        return True  # keep our writing half open: the other direction may still be sending

    def pause_writing(self) -> None:  # our send buffer is full: stop reading the other end
        if self.peer is not None and self.peer.transport is not None and not self.peer.closed:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.closed:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.link.lost(self, exc)


class _Link:
    """A client connection and its upstream connection."""

    def __init__(self, forwarder: Forwarder, rule: Rule) -> None:
        self.forwarder, self.rule = forwarder, rule
        self.stats = forwarder._stats[rule.name]
        self.client: _Side = _Accepted(self)
        self.upstream = _Side(self)
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.connecting: asyncio.Task[None] | None = None

    def count(self, side: _Side, n: int) -> None:
        self.stats["bytes_up" if side is self.client else "bytes_down"] += n

    def close(self) -> None:
        """Both directions ended: close both ends (buffered data is still sent)."""
        for side in (self.client, self.upstream):
            if side.transport is not None and not side.closed:
                side.transport.close()

    def abort(self) -> None:
        if self.connecting is not None and self.connecting is not asyncio.current_task():
            self.connecting.cancel()
        for side in (self.client, self.upstream):
            if side.transport is not None and not side.closed:
                side.transport.abort()

    def lost(self, side: _Side, exc: Exception | None) -> None:
        other = side.peer
        assert other is not None
        if other.transport is not None and not other.closed:
            if exc is None and side.eof:
                other.transport.close()  # an orderly end: what is buffered for the other end still goes
            else:
                other.transport.abort()  # a reset (or a close before EOF): pass it on as a reset
        if self.client.closed and (self.upstream.closed or self.upstream.transport is None):
            self.forwarder._forget(self)


class _Accepted(_Side):
    """The client end: made by the listener, it opens the upstream connection before reading."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.pause_reading()  # type: ignore[attr-defined]  # nothing is read until upstream is there
        self.link.forwarder._links.add(self.link)
        self.link.stats["accepted"] += 1
        self.link.connecting = asyncio.get_running_loop().create_task(self.link.forwarder._connect(self.link))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link.connecting is not None and not self.link.connecting.done():
            self.link.connecting.cancel()
        super().connection_lost(exc)


# -- the forwarder ------------------------------------------------------------------------------------

def _inside_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


def _inside_listener(host: str, port: int, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Forwarder:
    """Relays the connections of every :class:`Rule` it holds, between the host and one namespace.

    ``netns`` is a :class:`~.namespace.ClusterNetwork`, or the path of a namespace file
    (``/var/run/netns/NAME``). Rules can be added and removed while it runs; every method is
    thread-safe (they hand the work to the loop thread and wait for it).
    """

    def __init__(self, netns: ClusterNetwork | str | Path, *, connect_timeout_s: float = 5.0,
                 drain_s: float = 2.0, backlog: int = 1024, spare_sockets: int = 16) -> None:
        self.netns_path = Path(netns.netns_path if isinstance(netns, ClusterNetwork) else netns)
        self.connect_timeout_s = connect_timeout_s
        self.drain_s = drain_s
        self.backlog = backlog
        self.spare_sockets = spare_sockets
        self._rules: dict[str, Rule] = {}
        self._bound: dict[str, Address] = {}
        self._servers: dict[str, asyncio.AbstractServer] = {}
        self._links: set[_Link] = set()
        self._stats: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._spare: collections.deque[socket.socket] = collections.deque()
        self._refilling = False
        self._inside = NamespaceThread(self.netns_path, name="forward-netns")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> Forwarder:
        if self._thread is not None:
            return self
        self._inside.start()  # fails here, with the reason, when the namespace cannot be entered
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="forwarder", daemon=True)
        self._thread.start()
        ready.wait()
        self._call(self._refill())
        return self

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.call_soon(ready.set)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def stop(self, drain_s: float | None = None) -> None:
        """Close every listener, let open connections finish for ``drain_s`` seconds, cut the rest."""
        if self._thread is None or self._loop is None:
            return
        try:
            self._call(self._shutdown(self.drain_s if drain_s is None else drain_s), timeout=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None
            self._inside.stop()

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- rules --------------------------------------------------------------------------------
    def add(self, rule: Rule) -> Address:
        """Put ``rule`` in place and return the address it listens on (its port chosen when 0).

        Adding a rule already in place (same name, same rule) returns its address; a different
        rule under a taken name is refused: remove it first.
        """
        rule = rule.validated()
        return self._call(self._add(rule))

    def remove(self, name: str, *, cut: bool = False) -> bool:
        """Stop listening for ``name``; its open connections finish (``cut``: are reset now)."""
        return self._call(self._remove(name, cut))

    def sync(self, rules: Iterable[Rule]) -> dict[str, Address | str]:
        """Make the rules in place exactly ``rules``: name -> listening address, or the error."""
        wanted = {r.name: r for r in rules}
        result: dict[str, Address | str] = {}
        for name, rule in list(self._rules.items()):
            if wanted.get(name) != rule:
                self.remove(name)
        for name, rule in wanted.items():
            try:
                result[name] = self.add(rule)
            except (ForwardError, OSError) as e:
                result[name] = str(e)
        return result

    def rules(self) -> dict[str, Rule]:
        return dict(self._rules)

    def bound(self, name: str) -> Address:
        """Where rule ``name`` listens."""
        try:
            return self._bound[name]
        except KeyError:
            raise ForwardError(f"no forwarding rule {name!r} in place") from None

    def stats(self) -> dict[str, dict[str, int]]:
        """Per rule: accepted, failed (upstream not reached), active, bytes_up, bytes_down."""
        active = collections.Counter(link.rule.name for link in list(self._links))
        return {name: {"accepted": 0, "failed": 0, "bytes_up": 0, "bytes_down": 0,
                       **dict(self._stats.get(name, {})), "active": active[name]} for name in list(self._rules)}

    def active_connections(self) -> int:
        return len(self._links)

    # -- loop side ----------------------------------------------------------------------------
    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        if self._loop is None or self._thread is None:
            coro.close()
            raise ForwardError("the forwarder is not running: call start() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _inside_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        future = self._inside.submit(fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:  # stopping: a socket made meanwhile must not be left open
            future.add_done_callback(_close_result)
            raise

    async def _add(self, rule: Rule) -> Address:
        current = self._rules.get(rule.name)
        if current is not None:
            if current == rule or (rule.listen_port == 0 and current == _with_port(rule, self._bound[rule.name][1])):
                return self._bound[rule.name]
            raise ForwardError(f"a forwarding rule named {rule.name} is already in place ({current.describe()}); "
                               "remove it first")
        loop_rule = _loop_between(rule, self._rules.values())
        if loop_rule is not None:
            raise ForwardError(f"{rule.describe()} and {loop_rule.describe()} would relay connections back to "
                               "themselves forever")
        loop = asyncio.get_running_loop()

        def factory() -> _Side:
            return _Link(self, rule).client

        try:
            if rule.direction == "inward":
                server = await loop.create_server(factory, rule.listen_host, rule.listen_port, reuse_address=True,
                                                  backlog=self.backlog)
            else:
                sock = await self._inside_call(_inside_listener, rule.listen_host, rule.listen_port, self.backlog)
                server = await loop.create_server(factory, sock=sock)
        except OSError as e:
            where = "on the host" if rule.direction == "inward" else "inside the namespace"
            hint = {errno.EADDRINUSE: "the port is taken: choose another (or 0 for a free one)",
                    errno.EADDRNOTAVAIL: "that address is not there: add it first (ClusterNetwork.add_address)"}
            raise ForwardError(f"{rule.describe()}: cannot listen {where} on {rule.listen_host}:{rule.listen_port}: "
                               f"{e.strerror}; {hint.get(e.errno or 0, 'see the error')}") from e
        sockname = server.sockets[0].getsockname()
        self._servers[rule.name] = server
        self._rules[rule.name] = rule
        self._bound[rule.name] = (sockname[0], int(sockname[1]))
        return self._bound[rule.name]

    async def _remove(self, name: str, cut: bool) -> bool:
        server = self._servers.pop(name, None)
        self._rules.pop(name, None)
        self._bound.pop(name, None)
        if server is None:
            return False
        server.close()
        if cut:
            for link in [link for link in self._links if link.rule.name == name]:
                link.abort()
        return True

    async def _refill(self) -> None:
        """Keep a few unconnected inside sockets ready: an inward connection then needs no thread hop."""
        if self._refilling or self.spare_sockets <= 0:
            return
        self._refilling = True
        try:
            while len(self._spare) < self.spare_sockets:
                self._spare.append(await self._inside_call(_inside_socket))
        finally:
            self._refilling = False

    async def _upstream_socket(self) -> socket.socket:
        if self._spare:
            sock = self._spare.popleft()
            if len(self._spare) < self.spare_sockets // 2 and not self._refilling:
                asyncio.get_running_loop().create_task(self._refill())
            return sock
        return await self._inside_call(_inside_socket)

    async def _connect(self, link: _Link) -> None:
        rule, loop = link.rule, asyncio.get_running_loop()
        try:
            if rule.direction == "inward":
                sock = await self._upstream_socket()
                try:
                    await asyncio.wait_for(loop.sock_connect(sock, rule.target), self.connect_timeout_s)
                    await loop.create_connection(lambda: link.upstream, sock=sock)
                except BaseException:
                    sock.close()
                    raise
            else:
                await asyncio.wait_for(loop.create_connection(lambda: link.upstream, *rule.target),
                                       self.connect_timeout_s)
        except asyncio.CancelledError:  # the client went away, or the forwarder stops
            for side in (link.client, link.upstream):
                if side.transport is not None and not side.closed:
                    side.transport.abort()
            return
        except (OSError, asyncio.TimeoutError):
            link.stats["failed"] += 1
            link.abort()  # the client sees a reset: its connection did not reach the server
            return
        finally:
            link.connecting = None
        if link.client.closed:
            link.upstream.transport.abort()  # type: ignore[union-attr]  # the client went away meanwhile
            return
        link.client.transport.resume_reading()  # type: ignore[union-attr]

    def _forget(self, link: _Link) -> None:
        self._links.discard(link)

    async def _shutdown(self, drain_s: float) -> None:
        for name in list(self._servers):
            await self._remove(name, cut=False)
        deadline = time.monotonic() + drain_s
        while self._links and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for link in list(self._links):
            link.abort()
        for _ in range(50):  # the aborted transports report connection_lost on the next iterations
            if not self._links:
                break
            await asyncio.sleep(0.01)
        self._links.clear()
        while self._spare:
            self._spare.popleft().close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while self._spare:  # a refill that was running
            self._spare.popleft().close()


def _close_result(future: Any) -> None:
    if not future.cancelled() and future.exception() is None and isinstance(future.result(), socket.socket):
        future.result().close()


def _with_port(rule: Rule, port: int) -> Rule:
    return Rule(rule.name, rule.direction, rule.listen_host, port, rule.target_host, rule.target_port)


# -- as a process ---------------------------------------------------------------------------------------

class ForwarderProcess:
    """The forwarder of the sandbox in ``state_dir``, run as its own process (see the module doc).

    Its rules live in ``<state>/network/forwards.json`` (so a forwarder restarted after a crash
    relays the same), its report in ``forwarder.json``, its PID in ``forwarder.pid`` and its
    output in ``forwarder.log``. Every method works from a fresh instance in any process.
    """

    def __init__(self, state_dir: str | Path, *, name: str | None = None) -> None:
        self.network = ClusterNetwork(state_dir, name=name)
        self.rules_file = AddressBook(self.network.dir / "forwards.json")
        self.status_path = self.network.dir / "forwarder.json"
        self.log_path = self.network.dir / "forwarder.log"
        self.pid_file = self.network.forwarder_pid

    def running_pid(self) -> int | None:
        return self.pid_file.running_pid()

    def start(self, timeout: float = 15.0) -> int:
        """Start the forwarder (if it does not run yet) and wait until it relays; returns its PID."""
        pid = self.running_pid()
        if pid is not None:
            return pid
        if not self.network.exists():
            raise NetworkError(f"network namespace {self.network.name} does not exist: create the cluster "
                               "network first (ClusterNetwork(state_dir).create())")
        self.network.dir.mkdir(parents=True, exist_ok=True)
        self.status_path.unlink(missing_ok=True)
        argv = [sys.executable, "-m", FORWARDER_MODULE, "--state-dir", str(self.network.state_dir),
                "--netns", self.network.name]
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.pid_file.write(process.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status().get("pid") == process.pid and self.status().get("ready"):
                return process.pid
            if process.poll() is not None:
                self.pid_file.remove()
                raise ForwardError(f"the forwarder exited ({process.returncode}): {log_tail(self.log_path)} "
                                   f"(see {self.log_path})")
            time.sleep(0.02)
        raise ForwardError(f"the forwarder was not ready after {timeout:.0f} s; see {self.log_path}")

    def stop(self, grace: float = 5.0) -> bool:
        """SIGTERM the forwarder (if it is still ours): it closes its listeners and drains, then exits."""
        gone = self.pid_file.stop(grace=grace)
        if gone:
            self.status_path.unlink(missing_ok=True)
        return gone

    def status(self) -> dict[str, Any]:
        """The forwarder's report: pid, ready, and per rule where it listens (or its error) and its counters."""
        try:
            return dict(json.loads(self.status_path.read_text()))
        except (OSError, ValueError):
            return {}

    def rules(self) -> dict[str, Rule]:
        return {r["name"]: Rule.from_json(r) for r in self.rules_file.read().get("rules", [])}

    def add(self, rule: Rule, timeout: float = 10.0) -> Address:
        """Add (or replace) ``rule`` and wait until the forwarder listens for it; returns the address.

        A listen port 0 is chosen free here (on the host, or inside the namespace) and written
        into the rule, so a forwarder restarted after a crash listens on the same port again.
        """
        rule = rule.validated()
        if rule.listen_port == 0:
            if rule.direction == "inward":
                port = free_port(rule.listen_host)
            else:
                port = self.network.call(free_port, rule.listen_host)
            rule = _with_port(rule, port)
        version = self._change(lambda rules: {**rules, rule.name: rule})
        state = self._wait_applied(version, timeout).get("rules", {}).get(rule.name, {})
        if state.get("error") or not state.get("listening"):
            self._change(lambda rules: {k: v for k, v in rules.items() if k != rule.name})
            raise ForwardError(state.get("error") or f"{rule.describe()}: not in place")
        host, port = state["listening"]
        return str(host), int(port)

    def remove(self, name: str, timeout: float = 10.0) -> bool:
        """Remove rule ``name``; its listener is closed when this returns (open connections finish)."""
        if name not in self.rules():
            return False
        version = self._change(lambda rules: {k: v for k, v in rules.items() if k != name})
        self._wait_applied(version, timeout)
        return True

    def _change(self, edit: Callable[[dict[str, Rule]], dict[str, Rule]]) -> int:
        with self.rules_file.transaction() as doc:
            rules = {r["name"]: Rule.from_json(r) for r in doc.get("rules", [])}
            doc["rules"] = [r.to_json() for r in edit(rules).values()]
            doc["version"] = int(doc.get("version", 0)) + 1
            version = int(doc["version"])
        pid = self.running_pid()
        if pid is None:
            raise ForwardError(f"the forwarder of {self.network.state_dir} is not running: start it first "
                               "(ForwarderProcess(state_dir).start())")
        status = self.status()
        if status.get("pid") == pid and status.get("ready"):  # its handler is installed: SIGHUP would kill it before
            os.kill(pid, signal.SIGHUP)  # reload now rather than at the next poll (a quarter second)
        return version

    def _wait_applied(self, version: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if int(status.get("version", 0)) >= version:
                return status
            if self.running_pid() is None:
                raise ForwardError(f"the forwarder stopped: {log_tail(self.log_path)} (see {self.log_path})")
            time.sleep(0.01)
        raise ForwardError(f"the forwarder did not apply its rules within {timeout:.0f} s; see {self.log_path}")


def _serve(state_dir: Path, netns: str | None) -> int:
    """The forwarder process: relay the rules file's rules until SIGTERM (see the module doc)."""
    process = ForwarderProcess(state_dir, name=netns)
    process.pid_file.write(os.getpid())
    forwarder = Forwarder(process.network).start()
    wake, stopping = threading.Event(), threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: wake.set())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: (stopping.set(), wake.set()))
    seen: tuple[int, int, int] | None = None
    applied: dict[str, Any] = {"version": 0, "rules": {}}
    reported: dict[str, Any] = {}
    last_report = 0.0
    try:
        while not stopping.is_set():
            try:
                st = os.stat(process.rules_file.path)
                now = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                now = (0, 0, 0)
            if now != seen:
                seen = now
                doc = process.rules_file.read()
                rules, errors = [], {}
                for data in doc.get("rules", []):
                    try:
                        rules.append(Rule.from_json(data))
                    except ForwardError as e:
                        errors[str(data.get("name"))] = str(e)
                result = forwarder.sync(rules)
                applied = {"version": int(doc.get("version", 0)), "rules": {
                    **{name: {"error": error, "listening": None} for name, error in errors.items()},
                    **{name: ({"listening": list(r), "error": None} if isinstance(r, tuple)
                              else {"listening": None, "error": r})
                       for name, r in result.items()}}}
                for name, r in result.items():
                    if isinstance(r, str):
                        print(f"forwarder: {r}", flush=True)
                last_report = 0.0
            if time.monotonic() - last_report >= 1.0:
                stats, rules = forwarder.stats(), forwarder.rules()
                for name, state in applied["rules"].items():
                    state["stats"] = stats.get(name, {})
                    state["rule"] = rules[name].to_json() if name in rules else None
                report = {"pid": os.getpid(), "ready": True, "netns": process.network.name, **applied}
                if report != reported:  # counters move only with traffic: an idle forwarder writes nothing
                    write_json_atomically(process.status_path, {**report, "updated_at": time.time()})
                    reported = json.loads(json.dumps(report))
                last_report = time.monotonic()
            wake.wait(0.25)
            wake.clear()
    finally:
        forwarder.stop()
        process.status_path.unlink(missing_ok=True)
        if process.pid_file.read() == os.getpid():
            process.pid_file.remove()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {FORWARDER_MODULE}",
                                     description="relay TCP between the host's 127.0.0.1 and the sandbox's namespace")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--netns", default=None, help="the namespace's name (default: derived from the state dir)")
    args = parser.parse_args(argv)
    try:
        return _serve(args.state_dir, args.netns)
    except NetworkError as e:
        print(f"forwarder: {e}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
