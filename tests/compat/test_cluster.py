"""A 3-node DLog cluster of real processes on loopback: the nodes form the metadata Raft
group over the internal RPC, register as brokers under ephemeral keys, and any node's
DescribeCluster lists the live brokers and the controller (the Raft leader). Killing the
controller with SIGKILL elects a new one within a second; the dead broker's registration
expires with its session; the restarted node rejoins. DLog-only (cluster flags)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import DLOG_BIN, free_port, port_open
from kafka import KafkaAdminClient

pytestmark = pytest.mark.dlog_only


class Node:
    def __init__(self, node_id: int, workdir: Path, members: str, kafka_port: int, rpc_port: int):
        self.id = node_id
        self.workdir = workdir
        self.members = members
        self.kafka_port = kafka_port
        self.rpc_port = rpc_port
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"node{self.id}.{self.starts}.log"

    def start(self, members: str | None = None):
        self.spawn(members)
        self.wait_listening()

    def spawn(self, members: str | None = None):
        self.starts += 1
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(DLOG_BIN), "broker", "--node-id", str(self.id), "--data-dir", str(self.workdir / f"data{self.id}"),
             "--listen", self.bootstrap, "--rpc-listen", f"127.0.0.1:{self.rpc_port}",
             "--cluster-nodes", members or self.members, "--shards", "1"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, NO_COLOR="1", RUST_LOG="info"))
        log.close()

    def wait_listening(self):
        deadline = time.monotonic() + 30
        while not port_open(self.kafka_port):
            assert self.proc.poll() is None, f"node {self.id} exited with {self.proc.returncode}"
            assert time.monotonic() < deadline, f"node {self.id} did not listen"
            time.sleep(0.05)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise


@pytest.fixture
def cluster3(tmp_path):
    ids = [1, 2, 3]
    kafka = {i: free_port() for i in ids}
    rpc = {i: free_port() for i in ids}
    members = ",".join(f"{i}=127.0.0.1:{rpc[i]}" for i in ids)
    nodes = {i: Node(i, tmp_path, members, kafka[i], rpc[i]) for i in ids}
    # a member joins only once every member answers: start them all, then wait
    for n in nodes.values():
        n.spawn()
    for n in nodes.values():
        n.wait_listening()
    yield nodes
    for n in nodes.values():
        try:
            n.stop()
        except Exception:  # noqa: BLE001 - teardown of a killed node
            pass


def describe(node: Node) -> dict:
    a = KafkaAdminClient(bootstrap_servers=node.bootstrap, request_timeout_ms=5000)
    try:
        return a.describe_cluster()
    finally:
        a.close()


def wait_for(pred, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last}")


def test_three_nodes_form_a_cluster_and_survive_losing_the_controller(cluster3):
    nodes = cluster3

    def full(node):
        d = describe(node)
        return d if d["controller_id"] in nodes and len(d["brokers"]) == 3 else None

    for n in nodes.values():
        d = wait_for(lambda: full(n), 30, f"node {n.id} to see 3 brokers and a controller", 0.2)
        assert sorted((b["broker_id"], b["port"]) for b in d["brokers"]) == sorted(
            (m.id, m.kafka_port) for m in nodes.values())
    controllers = {describe(n)["controller_id"] for n in nodes.values()}
    assert len(controllers) == 1, f"nodes disagree on the controller: {controllers}"
    out = subprocess.run([str(DLOG_BIN), "cluster", "status", "--bootstrap", nodes[2].bootstrap],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "brokers: 3" in out.stdout and f"controller: {next(iter(controllers))}" in out.stdout, out.stdout

    # kill -9 the controller: a survivor leads within a second
    old = controllers.pop()
    survivor = nodes[1 if old != 1 else 2]
    t0 = time.monotonic()
    nodes[old].kill()
    d = wait_for(lambda: (lambda d: d if d["controller_id"] not in (old, -1) else None)(describe(survivor)),
                 5, "a new controller")
    elected = time.monotonic() - t0
    print(f"new controller {d['controller_id']} {elected:.3f}s after SIGKILL of {old}")
    assert elected < 1.0, f"a new controller took {elected:.2f}s"

    # the dead broker's registration expires with its session
    wait_for(lambda: sorted(b["broker_id"] for b in describe(survivor)["brokers"]) == sorted(
        i for i in nodes if i != old), 10, "the killed broker to leave the broker list", 0.2)

    # the killed node restarts on its data and is listed again
    nodes[old].start()
    wait_for(lambda: full(nodes[old]), 30, "the restarted node to see the cluster", 0.2)
    wait_for(lambda: len(describe(survivor)["brokers"]) == 3, 15, "the restarted broker to register", 0.2)


def test_a_node_with_another_member_list_or_cluster_refuses_to_start(cluster3):
    nodes = cluster3
    wait_for(lambda: len(describe(nodes[1])["brokers"]) == 3, 30, "the cluster to form", 0.2)
    n3 = nodes[3]
    assert n3.stop() == 0

    # --cluster-nodes that disagree with the cluster's members
    extra = n3.members + f",4=127.0.0.1:{free_port()}"
    n3.spawn(extra)
    assert n3.proc.wait(60) != 0, "a node with another member list must not start"
    assert "disagrees with the cluster's members" in n3.log_path.read_text(), n3.log_path.read_text()[-2000:]

    # a data directory of another cluster
    id_file = n3.workdir / "data3" / "meta" / "cluster.id"
    own = id_file.read_text()
    id_file.write_text("another-cluster-id")
    n3.spawn()
    assert n3.proc.wait(60) != 0, "a data directory of another cluster must not start"
    assert "belongs to cluster" in n3.log_path.read_text(), n3.log_path.read_text()[-2000:]

    # back to its own: it rejoins
    id_file.write_text(own)
    n3.start()
    wait_for(lambda: len(describe(nodes[1])["brokers"]) == 3, 15, "node 3 to register again", 0.2)
    ids = {describe(n)["cluster_id"] for n in nodes.values()}
    assert len(ids) == 1, f"the nodes report different cluster ids: {ids}"
