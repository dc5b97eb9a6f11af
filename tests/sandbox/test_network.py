"""The cluster network: a namespace of the sandbox's own, pod addresses in it, forwarders to and from the host.

Real namespaces, real processes inside them (``ip netns exec``), real TCP through the forwarder,
both embedded and as its own process. The host's own namespace must never get an address or a
route in a private range: every test checks it before and after.
"""
from __future__ import annotations

import http.server
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from runbooks_sandbox.network import (ClusterNetwork, Forwarder, ForwarderProcess, ForwardError, NamespaceBusy,
                                      NetworkError, Rule, namespace_name)
from runbooks_sandbox.servers.ports import free_port, is_port_free, process_alive, wait_for_port, wait_port_closed

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

IP = "/usr/sbin/ip" if os.access("/usr/sbin/ip", os.X_OK) else "ip"
PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]

# A pod: answers every GET with the address it listens on (HTTP/1.1, keep-alive).
POD = r"""
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = sys.argv[1].encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""

# Reads until the client's EOF (its half-close), then answers with everything read, reversed, and closes.
ECHO_AFTER_EOF = r"""
import socket, sys, threading
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(64)
def serve(conn):
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    conn.sendall(data[::-1])
    conn.close()
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


# -- the host's namespace stays clean ------------------------------------------------------------

def host_network() -> tuple[list[str], list[str]]:
    """The host's IPv4 addresses and routes (all tables), as ``ip`` prints them."""
    addrs = subprocess.run([IP, "-4", "-o", "address", "show"], capture_output=True, text=True, check=True).stdout
    routes = subprocess.run([IP, "-4", "route", "show", "table", "all"], capture_output=True, text=True,
                            check=True).stdout
    return sorted(" ".join(line.split()[1:4]) for line in addrs.splitlines()), sorted(routes.splitlines())


def private_entries(lines: list[str]) -> list[str]:
    """The lines naming an address or network in a private range."""
    found = []
    for line in lines:
        for word in line.replace("/", " /").split():
            try:
                address = ipaddress.ip_address(word)
            except ValueError:
                continue
            if any(address in net for net in PRIVATE):
                found.append(line)
    return found


def netns_names() -> list[str]:
    out = subprocess.run([IP, "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module", autouse=True)
def namespaces_permitted() -> Iterator[None]:
    """Skip the module where network namespaces cannot be made; check the host is untouched after it."""
    if os.geteuid() != 0:
        pytest.skip("the cluster network needs root: `ip netns add` (CAP_SYS_ADMIN) is not permitted here")
    probe = f"veza-probe-{uuid.uuid4().hex[:8]}"
    result = subprocess.run([IP, "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"`ip netns add` is not permitted here ({result.stderr.strip()}): the cluster network "
                    "needs a network namespace of its own")
    subprocess.run([IP, "netns", "del", probe], check=True)
    before = host_network()
    yield
    after = host_network()
    assert private_entries(after[0] + after[1]) == private_entries(before[0] + before[1]) == []


@pytest.fixture(autouse=True)
def host_untouched() -> Iterator[None]:
    """No test leaves (or holds, while it runs) a private-range address or route on the host."""
    before = host_network()
    assert private_entries(before[0] + before[1]) == []
    yield
    after = host_network()
    assert private_entries(after[0] + after[1]) == []


@pytest.fixture
def network(tmp_path: Path) -> Iterator[ClusterNetwork]:
    net = ClusterNetwork(tmp_path / "state").create()
    yield net
    net.delete(kill=True, grace=2.0)


def start_pod(network: ClusterNetwork, ip: str, port: int = 8080, program: str = POD) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(network.exec_argv([sys.executable, "-c", program, ip, str(port)]),
                               stdin=subprocess.DEVNULL)
    if not network.call(wait_for_port, port, ip, 15.0):
        process.kill()
        raise AssertionError(f"the pod on {ip}:{port} did not start (exit {process.poll()})")
    return process


def get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return reply.read().decode()


def get_on(sock: socket.socket) -> str:
    """One GET over an open (kept-alive) connection: the response, read to the end of its body."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
            data.lower().partition(b"content-length:")[2].split(b"\r\n")[0] or 0):
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data.decode()


def run_inside(network: ClusterNetwork, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(network.exec_argv([sys.executable, "-c", code]), capture_output=True, text=True, timeout=30)


# -- the namespace and its addresses -------------------------------------------------------------

def test_the_namespace_is_named_after_the_state_dir_and_holds_only_its_addresses(network: ClusterNetwork) -> None:
    assert network.name == namespace_name(network.state_dir) and network.name.startswith("veza-")
    assert network.name in netns_names()
    assert network.addresses() == [network.host_address] == ["172.18.0.1"]
    pod = network.allocate_pod_ip("default/a")
    node = network.allocate_node_ip("node-1")
    network.add_address("10.96.0.10")  # a Service's ClusterIP
    assert ipaddress.ip_address(pod) in network.pod_cidr and ipaddress.ip_address(node) in network.node_cidr
    assert sorted(network.addresses()) == sorted([network.host_address, pod, node, "10.96.0.10"])
    addrs, routes = host_network()  # while the namespace holds them, the host has none of them
    assert private_entries(addrs + routes) == []
    assert private_entries(["inet 10.244.0.2/32 scope global lo", "local 172.18.0.1 dev lo"]) != []  # the check sees them
    with pytest.raises(NetworkError, match="none of the cluster's ranges"):
        network.add_address("192.168.7.7")
    with pytest.raises(NetworkError, match="loopback"):
        ClusterNetwork(network.state_dir, pod_cidr="127.20.0.0/16")
    network.remove_address("10.96.0.10")
    assert "10.96.0.10" not in network.addresses()


def test_allocations_are_shared_through_the_state_dir_and_survive_a_new_instance(network: ClusterNetwork) -> None:
    a = network.allocate_pod_ip("default/a")
    b = network.allocate_pod_ip("default/b")
    assert a != b
    again = ClusterNetwork(network.state_dir)  # another process would do the same
    assert again.allocations() == {a: "default/a", b: "default/b"}
    assert again.allocate_pod_ip("default/a") == a  # an owner asking again gets its address back
    c = again.allocate_pod_ip("default/c")
    assert c not in (a, b)
    assert network.owner_of(c) == "default/c"
    assert again.release_pod_ip(a) == "default/a"
    assert a not in network.addresses() and a not in network.allocations()
    d = network.allocate_pod_ip("default/d")
    assert d != a  # a released address is not handed out again at once (clients may still hold it)
    assert network.allocate_pod_ip("default/e", within="10.244.3.0/24").startswith("10.244.3.")
    assert network.allocate_node_ip("node-1") == network.allocate_node_ip("node-1")
    with pytest.raises(NetworkError, match="created with pod_cidr"):
        ClusterNetwork(network.state_dir, pod_cidr="10.250.0.0/16").allocate_pod_ip("default/x")
    record = json.loads((network.state_dir / "network" / "network.json").read_text())
    assert record["config"]["name"] == network.name and record["allocations"][d] == "default/d"


def test_concurrent_allocations_from_many_threads_never_collide(network: ClusterNetwork) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def allocate(i: int) -> None:
        ip = ClusterNetwork(network.state_dir).allocate_pod_ip(f"default/p{i}")
        with lock:
            results.append(ip)

    threads = [threading.Thread(target=allocate, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 20
    assert set(results) <= set(network.addresses())


def test_create_after_a_reboot_puts_the_recorded_addresses_back(network: ClusterNetwork) -> None:
    pod = network.allocate_pod_ip("default/a")
    subprocess.run([IP, "netns", "del", network.name], check=True)  # what a reboot does to /var/run/netns
    assert not network.exists() and ClusterNetwork(network.state_dir).addresses() == []
    ClusterNetwork(network.state_dir).create()
    assert pod in network.addresses()


# -- pods and forwarders -----------------------------------------------------------------------------

def test_two_pods_on_the_same_port_each_reached_from_the_host(network: ClusterNetwork) -> None:
    a, b = network.allocate_pod_ip("default/a"), network.allocate_pod_ip("default/b")
    pods = [start_pod(network, a), start_pod(network, b)]
    try:
        with Forwarder(network) as forwarder:
            port_a = forwarder.add(Rule.inward("pod-a", a, 8080))[1]
            port_b = forwarder.add(Rule.inward("pod-b", b, 8080))[1]
            assert get(port_a) == a and get(port_b) == b
            assert forwarder.add(Rule.inward("pod-a", a, 8080))[1] == port_a  # the same rule again: no change
            with pytest.raises(ForwardError, match="already in place"):
                forwarder.add(Rule.inward("pod-a", b, 8080))
            assert forwarder.stats()["pod-a"]["accepted"] == 1
        # Pods reach each other directly, inside.
        result = run_inside(network, f"import urllib.request; print(urllib.request.urlopen('http://{b}:8080/').read().decode())")
        assert result.stdout.strip() == b, result.stderr
    finally:
        for pod in pods:
            pod.terminate()
            pod.wait(10)


def test_a_pod_reaches_a_host_server_at_the_same_url_through_an_outward_forwarder(network: ClusterNetwork) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"host server"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/"  # what a Secret would hold: the same from both sides
    fetch = f"import urllib.request, sys; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
    try:
        assert get(port) == "host server"
        unreachable = subprocess.run(network.exec_argv([sys.executable, "-c", fetch, url]), capture_output=True,
                                     text=True, timeout=30)
        assert unreachable.returncode != 0 and "refused" in unreachable.stderr  # no way out without a forwarder
        with Forwarder(network) as forwarder:
            forwarder.add(Rule.outward("host-http", port))
            forwarder.add(Rule.outward("host-http-gw", port, listen_ip=network.host_address))
            for inside_url in (url, f"http://{network.host_address}:{port}/"):
                result = subprocess.run(network.exec_argv([sys.executable, "-c", fetch, inside_url]),
                                        capture_output=True, text=True, timeout=30)
                assert result.stdout.strip() == "host server", result.stderr
            with pytest.raises(ForwardError, match="back to themselves"):
                forwarder.add(Rule.inward("loop", "127.0.0.1", port, host_port=port))
    finally:
        server.shutdown()
        server.server_close()


def test_rules_refuse_a_host_side_that_is_not_loopback() -> None:
    with pytest.raises(ForwardError, match="must be a loopback address"):
        Rule.inward("x", "10.244.0.2", 8080, host="192.0.2.2")
    with pytest.raises(ForwardError, match="must be a loopback address"):
        Rule.outward("x", 5432, host="10.1.2.3")
    with pytest.raises(ForwardError, match="not an IPv4 address"):
        Rule.inward("x", "pod-a", 8080)


def test_half_close_passes_through_and_a_refused_upstream_resets_the_client(network: ClusterNetwork) -> None:
    pod = network.allocate_pod_ip("default/echo")
    echo = start_pod(network, pod, 9000, ECHO_AFTER_EOF)
    try:
        with Forwarder(network) as forwarder:
            port = forwarder.add(Rule.inward("echo", pod, 9000))[1]
            payload = os.urandom(3_000_000)  # more than the socket buffers: flow control is exercised
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)  # the server answers only once it has seen our EOF
                received = bytearray()
                while chunk := sock.recv(1 << 20):
                    received += chunk
            assert bytes(received) == payload[::-1]
            dead = forwarder.add(Rule.inward("dead", pod, 9001))[1]  # nothing listens there
            with socket.create_connection(("127.0.0.1", dead), timeout=10) as sock:
                sock.sendall(b"hello")
                with pytest.raises((ConnectionResetError, ConnectionAbortedError)):
                    if sock.recv(10) == b"":
                        raise ConnectionAbortedError("closed without data")
            deadline = time.monotonic() + 5
            while forwarder.stats()["dead"]["failed"] != 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert forwarder.stats()["dead"]["failed"] == 1
    finally:
        echo.terminate()
        echo.wait(10)


def test_fifty_concurrent_connections_lose_nothing_and_stop_leaks_no_fd_or_thread(network: ClusterNetwork) -> None:
    pod = network.allocate_pod_ip("default/a")
    server = start_pod(network, pod)
    fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
    errors: list[str] = []
    answers: list[int] = []
    try:
        forwarder = Forwarder(network, drain_s=0.5).start()
        port = forwarder.add(Rule.inward("pod", pod, 8080))[1]
        start = threading.Barrier(50)

        def client(i: int) -> None:
            try:
                start.wait(10)
                import http.client

                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                for _ in range(20):  # kept alive: 20 requests on one connection
                    connection.request("GET", f"/?client={i}")
                    reply = connection.getresponse()
                    assert reply.read().decode() == pod
                    answers.append(i)
                connection.close()
                assert get(port) == pod  # and one on a connection of its own
                answers.append(i)
            except Exception as e:  # noqa: BLE001 - collected, asserted below
                errors.append(f"client {i}: {type(e).__name__}: {e}")

        clients = [threading.Thread(target=client, args=(i,)) for i in range(50)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(60)
        assert errors == []
        assert len(answers) == 50 * 21
        stats = forwarder.stats()["pod"]
        assert stats["accepted"] == 100 and stats["failed"] == 0
        idle = socket.create_connection(("127.0.0.1", port))  # open when the forwarder stops: cut after drain_s
        time.sleep(0.1)
        forwarder.stop()
        try:
            assert idle.recv(10) == b""
        except ConnectionResetError:
            pass  # cut either way
        idle.close()
        assert wait_port_closed(port)
    finally:
        server.terminate()
        server.wait(10)
    deadline = time.monotonic() + 5
    while (threading.active_count(), len(os.listdir("/proc/self/fd"))) != (threads, fds) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == threads
    assert len(os.listdir("/proc/self/fd")) == fds


def test_the_forwarder_process_follows_its_rules_file(network: ClusterNetwork) -> None:
    pod = network.allocate_pod_ip("default/a")
    server = start_pod(network, pod)
    process = ForwarderProcess(network.state_dir)
    try:
        pid = process.start()
        assert process.start() == pid  # already running: the same one
        host, port = process.add(Rule.inward("pod", pod, 8080))
        assert host == "127.0.0.1" and get(port) == pod
        with socket.create_connection(("127.0.0.1", port), timeout=10) as kept:
            assert get_on(kept).endswith(pod)
            assert process.remove("pod")
            assert wait_port_closed(port, timeout=2)  # no new connections...
            assert get_on(kept).endswith(pod)  # ...but an open one goes on
        with pytest.raises(ForwardError, match="Cannot assign requested address"):
            process.add(Rule.outward("nowhere", 5432, listen_ip="10.244.99.99"))
        assert set(process.rules()) == set()  # a rule that could not be put in place is not kept
        port = process.add(Rule.inward("pod", pod, 8080))[1]
        # Restarted after a crash, it listens for the same rules on the same ports.
        os.kill(pid, 9)
        deadline = time.monotonic() + 5
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        new_pid = process.start()
        assert new_pid != pid and get(port) == pod
        assert process.status()["rules"]["pod"]["listening"] == ["127.0.0.1", port]
    finally:
        process.stop()
        server.terminate()
        server.wait(10)
    assert process.running_pid() is None and is_port_free(port)


def test_delete_refuses_while_pods_run_then_removes_everything(tmp_path: Path) -> None:
    network = ClusterNetwork(tmp_path / "state").create()
    pod = network.allocate_pod_ip("default/a")
    server = start_pod(network, pod)
    ForwarderProcess(network.state_dir).start()
    port = ForwarderProcess(network.state_dir).add(Rule.inward("pod", pod, 8080))[1]
    assert get(port) == pod
    with pytest.raises(NamespaceBusy, match="still has 1 process") as busy:
        ClusterNetwork(network.state_dir).delete()
    assert list(busy.value.pids) == [server.pid]
    # From a fresh instance, the state directory alone (the creating process could have been killed).
    done = ClusterNetwork(network.state_dir).delete(kill=True, grace=2.0)
    assert any("forwarder" in line for line in done) and f"terminated pid {server.pid}" in done
    assert server.wait(5) is not None
    assert network.name not in netns_names()
    assert not (Path("/var/run/netns") / network.name).exists()
    assert wait_port_closed(port, timeout=5)
    assert ForwarderProcess(network.state_dir).running_pid() is None
    assert not (network.state_dir / "network" / "network.json").exists()
    assert ClusterNetwork(network.state_dir).delete() == []  # idempotent
    assert ClusterNetwork(tmp_path / "never-used").delete() == []


def test_delete_refuses_while_an_embedded_forwarder_holds_the_namespace(network: ClusterNetwork) -> None:
    forwarder = Forwarder(network).start()
    try:
        with pytest.raises(NamespaceBusy, match="held by process"):
            network.delete()
        assert network.exists()
    finally:
        forwarder.stop()
    assert network.holders() == {}
    network.delete()
    assert network.name not in netns_names()
