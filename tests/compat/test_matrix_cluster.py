"""The six-client compatibility matrix against a 3-node DLog cluster (DLog-only).

The scenario of tests/clients/README.md, judged step by step exactly as in test_matrix.py,
with three differences: the drivers get all three nodes as bootstrap, the topic is
created with replication factor 3 (so every partition's log starts each leader epoch
with a LeaderChange control batch the clients must skip), and the "restart" step
SIGKILLs and restarts one node that leads partitions of the topic while the other two
keep serving. Fewer records than the single-node run keep it cheap:
DLOG_MATRIX_CLUSTER_RECORDS (default 10,000) at DLOG_MATRIX_CLUSTER_RATE records/s
(default 400, so production lasts ~25 s like the single-node run and the leave, rejoin
and kill still happen mid-stream). DLOG_MATRIX_CLIENTS limits the clients, as in
test_matrix.py. The results go to docs/COMPATIBILITY.md as their own table.

Sarama and kafka-python acknowledge on the leader alone by default (acks=1): a leader
killed before its followers copied a record loses it, as in Kafka. For them an
acknowledged record missing from the log after the kill is reported (n/a, with the
count), while one the log holds but no consumer delivered still fails the step.
"""

from __future__ import annotations

import os
import time

import matrix
import pytest
from confluent_kafka.admin import AdminClient
from test_cluster import stop_cluster, wait_for
from test_matrix import SELECTED, launchers  # noqa: F401 - fixture
from test_replication import partitions_of, start_nodes, wait_formed

pytestmark = pytest.mark.dlog_only

RECORDS = int(os.environ.get("DLOG_MATRIX_CLUSTER_RECORDS", "10000"))
RATE = int(os.environ.get("DLOG_MATRIX_CLUSTER_RATE", "400"))
REPLICAS = 3
_RESULTS: dict[str, dict] = {}


class Cluster:
    """What matrix.Scenario needs of a broker (bootstrap, kill, start) for a 3-node
    cluster: kill() SIGKILLs a node leading partitions of the topic, the group's
    coordinator if it leads any (so the group's committed offsets move to another node
    and back), else the one leading most; start() restarts that node on its data."""

    def __init__(self, nodes: dict):
        self.nodes = nodes
        self.topic: str | None = None
        self.group: str | None = None
        self.victim = None
        self.kills: list[str] = []

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes.values())

    def leaders(self) -> dict[int, int]:
        """{partition: leader id} of the topic, from any live node's Metadata."""
        last = None
        for n in self.nodes.values():
            if n.proc.poll() is None:
                try:
                    return {p: leader for p, (leader, _, _) in partitions_of(n.bootstrap, self.topic).items()}
                except Exception as e:  # noqa: BLE001 - try the next node
                    last = e
        raise matrix.StepFailed(f"no live node answered Metadata for {self.topic}: {last!r}")

    def coordinator(self) -> int | None:
        """The group's coordinator, as DescribeGroups reports it (None if unknown)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "broker.address.family": "v4"})
        try:
            return admin.describe_consumer_groups([self.group], request_timeout=10)[self.group].result(15).coordinator.id
        except Exception as e:  # noqa: BLE001 - fall back to the partition leaders alone
            print(f"describe group {self.group}: {e!r}")
            return None

    def kill(self):
        assert self.victim is None, "a node is already down"
        leaders = self.leaders()
        led = {i: sorted(p for p, leader in leaders.items() if leader == i) for i in self.nodes}
        coordinator = self.coordinator()
        if led.get(coordinator):
            victim, role = coordinator, "the group coordinator, "
        else:
            victim, role = max(sorted(led), key=lambda i: len(led[i])), ""
        if not led[victim]:
            raise matrix.StepFailed(f"no node leads a partition of {self.topic}: {leaders}")
        self.victim = self.nodes[victim]
        self.victim.kill()
        self.kills.append(f"node {victim} ({role}leader of partitions {led[victim]})")

    def start(self):
        victim, self.victim = self.victim, None
        victim.start()


@pytest.fixture
def cluster(tmp_path):
    nodes = start_nodes(tmp_path, 3)
    try:
        wait_formed(nodes, 3)
        yield Cluster(nodes)
    finally:
        stop_cluster(nodes)


@pytest.fixture(scope="session", autouse=True)
def _write_cluster_matrix():
    yield
    if not _RESULTS:
        return
    matrix.record_results(matrix.CLUSTER_TARGET, _RESULTS, records=RECORDS, rate=RATE)


class ClusterScenario(matrix.Scenario):
    """matrix.Scenario with the topic created at replication factor 3; the create step
    also checks that every partition has 3 replicas, all in sync, before going on."""

    def __init__(self, client, cluster: Cluster, launchers_dir, log_dir):
        super().__init__(client, cluster, launchers_dir, log_dir, records=RECORDS, rate=RATE,
                         replication_factor=REPLICAS)
        cluster.topic = self.topic
        cluster.group = self.group

    def _create(self):
        detail = super()._create()
        bootstrap = next(iter(self.broker.nodes.values())).bootstrap

        def replicated():
            ps = partitions_of(bootstrap, self.topic)
            ok = all(leader >= 0 and len(r) == REPLICAS and sorted(i) == sorted(r) for leader, r, i in ps.values())
            return ps if ok else None

        try:
            wait_for(replicated, 30, f"{self.topic}: {REPLICAS} replicas per partition, all in sync", 0.2)
        except AssertionError as e:
            raise matrix.StepFailed(str(e)) from None
        return f"{detail}, {REPLICAS} replicas each"

    def _restart(self):
        detail = super()._restart()
        return detail.replace("broker back", f"{self.broker.kills[-1]} back")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("client", SELECTED)
def test_client_scenario_on_a_cluster(client, launchers, cluster, tmp_path):  # noqa: F811 - fixture
    family = matrix.CLIENTS[client][0]
    ok, build_log = launchers["built"][family]
    if not ok:
        _RESULTS[client] = {k: ("FAIL" if k == "create" else "skip", "driver did not build") for k, _ in matrix.STEPS}
        pytest.fail(f"the {family} drivers did not build:\n{build_log}", pytrace=False)
    t0 = time.monotonic()
    s = ClusterScenario(client, cluster, launchers["dir"], tmp_path)
    s.run()
    took = time.monotonic() - t0
    _RESULTS[client] = s.results
    report = "\n".join(f"  {status:>4}  {label.replace('50k', f'{RECORDS / 1000:g}k')}: {s.results[key][1]}"
                       for key, label in matrix.STEPS for status in [s.results[key][0]])
    print(f"{client} against a 3-node DLog cluster in {took:.1f}s (logs in {tmp_path}):\n{report}")
    bad = [key for key, _ in matrix.STEPS if s.results[key][0] in ("FAIL", "skip")]
    assert not bad, f"{client}: steps failed: {bad}\n{report}"
