"""A real network partition: three DLog processes, each in its own network namespace,
joined by veth pairs to one bridge. Taking the controller's link down isolates it: the
majority elects a new controller within seconds and goes on taking metadata writes,
while the isolated node takes none (its admin request times out and is never applied);
bringing the link back up converges every node on the majority's metadata.

Needs root and `ip` (netns, veth, bridge). DLog-only (cluster flags)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import DLOG_BIN
from test_cluster import wait_for

pytestmark = pytest.mark.dlog_only

KAFKA_PORT = 9092
RPC_PORT = 7000


def _netns_usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "needs the `ip` tool (iproute2)"
    return None


def ip(*args: str, ns: str | None = None, check: bool = True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["ip", *args]
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


class NetCluster:
    """`n` nodes, node i at 10.<net>.0.i in namespace <prefix>n<i>."""

    def __init__(self, workdir: Path, n: int):
        tag = os.getpid() % 10000
        self.prefix = f"dl{tag}"
        self.net = 64 + tag % 64
        self.workdir = workdir
        self.ids = list(range(1, n + 1))
        self.procs: dict[int, subprocess.Popen] = {}
        self.bridge = f"{self.prefix}br"

    def addr(self, i: int) -> str:
        return f"10.{self.net}.0.{i}"

    def bootstrap(self, i: int) -> str:
        return f"{self.addr(i)}:{KAFKA_PORT}"

    def ns(self, i: int) -> str:
        return f"{self.prefix}n{i}"

    def link(self, i: int) -> str:
        return f"{self.prefix}v{i}"

    def setup(self):
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"10.{self.net}.0.254/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i in self.ids:
            subprocess.run(["ip", "netns", "add", self.ns(i)], check=True)
            ip("link", "add", self.link(i), "type", "veth", "peer", "name", "eth0", "netns", self.ns(i))
            ip("link", "set", self.link(i), "master", self.bridge)
            ip("link", "set", self.link(i), "up")
            ip("addr", "add", f"{self.addr(i)}/24", "dev", "eth0", ns=self.ns(i))
            ip("link", "set", "eth0", "up", ns=self.ns(i))
            ip("link", "set", "lo", "up", ns=self.ns(i))

    def teardown(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        for i in self.ids:
            subprocess.run(["ip", "netns", "del", self.ns(i)], capture_output=True)
        ip("link", "del", self.bridge, check=False)

    def start(self, i: int):
        members = ",".join(f"{j}={self.addr(j)}:{RPC_PORT}" for j in self.ids)
        log = open(self.workdir / f"node{i}.log", "ab")
        self.procs[i] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(i), str(DLOG_BIN), "broker", "--node-id", str(i),
             "--data-dir", str(self.workdir / f"data{i}"), "--listen", self.bootstrap(i),
             "--rpc-listen", f"{self.addr(i)}:{RPC_PORT}", "--cluster-nodes", members, "--shards", "1"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, NO_COLOR="1", RUST_LOG="info"))
        log.close()

    def cut(self, i: int):
        ip("link", "set", self.link(i), "down")

    def heal(self, i: int):
        ip("link", "set", self.link(i), "up")

    def cli(self, i: int, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs the dlog CLI inside node i's namespace against node i."""
        return subprocess.run(["ip", "netns", "exec", self.ns(i), str(DLOG_BIN), *args, "--bootstrap",
                               self.bootstrap(i)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def net3(tmp_path):
    why = _netns_usable()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the partition test must run in CI: {why}")
        pytest.skip(why)
    c = NetCluster(tmp_path, 3)
    c.teardown()  # leftovers of an interrupted run
    c.setup()
    try:
        for i in c.ids:
            c.start(i)
        yield c
    finally:
        c.teardown()


def status(c: NetCluster, i: int) -> dict | None:
    """`dlog cluster status` of node i, run in its namespace: controller and brokers."""
    out = c.cli(i, "cluster", "status", timeout=20)
    if out.returncode != 0:
        return None
    fields = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    controller = fields.get("controller", "")
    fields["controller"] = int(controller) if controller.isdigit() else None
    return fields


def topics(c: NetCluster, i: int) -> set[str]:
    out = c.cli(i, "topic", "list", timeout=20)
    assert out.returncode == 0, out.stderr
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_isolating_the_controller_moves_metadata_to_the_majority(net3):
    c = net3
    full = wait_for(lambda: (lambda s: s if s and s.get("brokers") == "3" and s["controller"] else None)(status(c, 1)),
                    60, "the cluster to form", 0.3)
    old = full["controller"]
    assert c.cli(1, "topic", "create", "before", "--partitions", "3").returncode == 0
    majority = [i for i in c.ids if i != old]

    t0 = time.monotonic()
    c.cut(old)
    # the isolated node cannot commit: its admin request fails (after the forward
    # timeout) and is never applied, even after healing
    minority = subprocess.Popen(
        ["ip", "netns", "exec", c.ns(old), str(DLOG_BIN), "topic", "create", "minority-write", "--partitions", "1",
         "--bootstrap", c.bootstrap(old)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def new_controller():
        s = status(c, majority[0])
        return s if s and s["controller"] not in (None, old) else None

    s = wait_for(new_controller, 10, "the majority to elect a new controller", 0.1)
    print(f"majority elected {s['controller']} {time.monotonic() - t0:.2f}s after isolating {old}")
    created = c.cli(majority[1], "topic", "create", "during", "--partitions", "2")
    assert created.returncode == 0, created.stdout + created.stderr
    assert "during" in topics(c, majority[0])

    out, err = minority.communicate(timeout=90)
    assert minority.returncode != 0, f"the isolated node accepted a metadata write: {out} {err}"
    print(f"isolated node refused: {(out + err).strip()[:200]}")

    c.heal(old)
    wait_for(lambda: "during" in topics(c, old), 30, "the healed node to converge", 0.3)
    for i in c.ids:
        assert "minority-write" not in topics(c, i), f"node {i} shows the minority's write"
        assert {"before", "during"} <= topics(c, i)
    wait_for(lambda: (lambda s: s and s.get("brokers") == "3")(status(c, majority[0])), 30,
             "every broker registered again", 0.3)
