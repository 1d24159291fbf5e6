"""Partition replication under failures, with real processes: kill -9 of leaders and
followers under acks=all load, a CP topic that must refuse writes without its quorums
and heal, an AP topic that must stay writable, a whole-cluster crash with and without
write caching, and a network partition isolating a leader (network namespaces).

Every test runs `checker.Checker` (a producer recording each send and its outcome) and
rereads the log at the end: no acknowledged record may be lost, moved, duplicated or
reordered (except where an AP topic's contract allows a loss). Measured failover times
are printed (run with -s to see them). DLog-only (cluster flags)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from checker import Checker, analyze, read_log, Send
from checker import test_checker_reports_what_it_should  # noqa: F401 - the checker's self-test
from confluent_kafka.admin import AdminClient, NewTopic
from conftest import free_port, port_open
from test_cluster import Node, describe, stop_cluster, wait_for
from test_partition import net3  # noqa: F401 - fixture

pytestmark = pytest.mark.dlog_only


# --- helpers -----------------------------------------------------------------------------

def start_nodes(tmp_path: Path, n: int, attempts: int = 3) -> dict:
    """As test_cluster.start_cluster, but a node that cannot bind its port (a free port
    taken meanwhile, e.g. as a client's ephemeral port) fails fast and the cluster starts
    again on fresh ports."""
    for attempt in range(attempts):
        ids = list(range(1, n + 1))
        kafka = {i: free_port() for i in ids}
        rpc = {i: free_port() for i in ids}
        members = ",".join(f"{i}=127.0.0.1:{rpc[i]}" for i in ids)
        workdir = tmp_path / f"try{attempt}"
        workdir.mkdir()
        nodes = {i: Node(i, workdir, members, kafka[i], rpc[i]) for i in ids}
        for node in nodes.values():
            node.spawn()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            dead = [i for i, node in nodes.items() if node.proc.poll() is not None]
            if dead or all(port_open(node.kafka_port) for node in nodes.values()):
                break
            time.sleep(0.05)
        if not dead and all(port_open(node.kafka_port) for node in nodes.values()):
            return nodes
        why = {i: nodes[i].log_path.read_text()[-300:] for i in dead}
        stop_cluster(nodes)
        print(f"cluster start attempt {attempt} failed: {why or 'not listening within 60s'}")
    raise AssertionError(f"could not start a {n}-node cluster in {attempts} attempts")


@pytest.fixture
def cluster3(tmp_path):
    nodes = start_nodes(tmp_path, 3)
    yield nodes
    stop_cluster(nodes)


@pytest.fixture
def cluster5(tmp_path):
    nodes = start_nodes(tmp_path, 5)
    yield nodes
    stop_cluster(nodes)


def bootstraps(nodes, ids=None) -> str:
    return ",".join(nodes[i].bootstrap for i in (ids or nodes))


def wait_formed(nodes, n: int):
    for node in nodes.values():
        wait_for(lambda: len(describe(node)["brokers"]) == n and describe(node)["controller_id"] in nodes, 60,
                 f"node {node.id} to see {n} brokers and a controller", 0.2)
    return describe(next(iter(nodes.values())))["controller_id"]


def partitions_of(bootstrap: str, topic: str) -> dict:
    """{partition: (leader, replicas, isrs)} from Metadata."""
    md = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"}).list_topics(topic, timeout=10)
    t = md.topics[topic]
    assert t.error is None, t.error
    return {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in t.partitions.values()}


def create(bootstrap: str, topic: str, partitions: int = 1, assignment=None, **config) -> dict:
    """Creates `topic` and waits until every partition has a leader and every replica
    in sync; returns partitions_of()."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
    kw = {"num_partitions": len(assignment), "replica_assignment": assignment} if assignment else {"num_partitions": partitions}
    nt = NewTopic(topic, config={k.replace("_", "."): str(v) for k, v in config.items()}, **kw)
    admin.create_topics([nt], operation_timeout=30, request_timeout=30)[topic].result(30)

    def ready():
        ps = partitions_of(bootstrap, topic)
        ok = len(ps) == partitions and all(l >= 0 and sorted(i) == sorted(r) for l, r, i in ps.values())
        return ps if ok else None

    return wait_for(ready, 30, f"{topic}: every partition led with all replicas in sync", 0.2)


def new_leader(bootstrap: str, topic: str, partition: int, not_in) -> int:
    leader = partitions_of(bootstrap, topic)[partition][0]
    return leader if leader >= 0 and leader not in not_in else None


def acked_between(checker: Checker, t0: float, t1: float) -> list[Send]:
    return [s for s in checker.snapshot() if s.ok and t0 <= s.acked <= t1]


def probe(bootstrap: str, topic: str) -> str:
    """One acks=all record, no retries, no idempotence: the broker's own answer (the
    checker's idempotent producer retries NOT_ENOUGH_REPLICAS until it times out)."""
    from confluent_kafka import Producer
    got = []
    p = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4", "acks": "all",
                  "enable.idempotence": False, "retries": 0, "message.timeout.ms": 3000,
                  "request.timeout.ms": 2500, "logger": logging.getLogger("rdkafka")})
    t0 = time.monotonic()
    p.produce(topic, value=b"probe", partition=0,
              on_delivery=lambda err, msg: got.append(err.name() if err else f"acked at {msg.offset()}"))
    p.flush(10)
    return f"{got[0] if got else 'no delivery report'} after {time.monotonic() - t0:.2f}s"


def errors_between(checker: Checker, t0: float, t1: float) -> dict:
    out = {}
    for s in checker.snapshot():
        if s.error and s.acked and t0 <= s.acked <= t1:
            out[s.error] = out.get(s.error, 0) + 1
    return out


# --- a. kill -9 a leader under load ----------------------------------------------------------

def test_kill_a_leader_under_load_loses_no_acknowledged_record(cluster3):
    nodes = cluster3
    controller = wait_formed(nodes, 3)
    ps = create(nodes[1].bootstrap, "busy", 3)
    assert all(len(r) == 3 for _, r, _ in ps.values()), f"the default replication factor must be 3: {ps}"
    leaders = {p: l for p, (l, _, _) in ps.items()}
    candidates = sorted({l for l in leaders.values() if l != controller})
    if candidates:
        victim = candidates[0]
    else:
        victim = leaders[0]
        print(f"every partition is led by the controller {controller}: killing it")
    victim_parts = [p for p, l in leaders.items() if l == victim]
    survivors = [i for i in nodes if i != victim]

    chk = Checker(bootstraps(nodes), "busy", 3, writer="a", rate=300).start()
    chk.wait_acks_after(chk.start_time, 30, count=20)
    time.sleep(2)
    t_kill = time.monotonic()
    nodes[victim].kill()
    elected = {}
    for p in victim_parts:
        wait_for(lambda: new_leader(nodes[survivors[0]].bootstrap, "busy", p, [victim]), 30,
                 f"partition {p} to get a new leader", 0.05)
        elected[p] = time.monotonic() - t_kill
    chk.wait_acks_after(t_kill, 30, partitions=victim_parts)
    time.sleep(2)
    chk.stop()
    resumed = max(chk.resumed_after(t_kill, p) for p in victim_parts)
    report = chk.verify(bootstraps(nodes, survivors))
    print(f"\n[a] killed leader {victim} (controller {controller}) of partitions {victim_parts}: new leader in "
          f"metadata after {elected}, acks resumed after {resumed:.3f}s; {report.summary()}")
    assert not chk.fatal, chk.fatal
    assert report.clean, report.summary()
    assert report.acked > 1000, report.summary()
    assert report.stall < 10, f"the producer stalled {report.stall:.2f}s (target < 1s)"


# --- b. a CP topic refuses writes without its quorums, then heals --------------------------------

def test_cp_topic_without_a_read_quorum_refuses_writes_then_heals(cluster5):
    """5 nodes, a 3-replica CP topic (W=2, R=2) placed off the controller: kill -9 its
    leader and one follower. The metadata majority survives and names the remaining
    replica leader, which cannot gather R=2 seal answers: no write may be acknowledged
    until a replica returns; then writes resume and nothing acknowledged is lost."""
    nodes = cluster5
    controller = wait_formed(nodes, 5)
    replicas = [i for i in nodes if i != controller][:3]
    ps = create(nodes[controller].bootstrap, "cp", assignment=[replicas], write_quorum=2, read_quorum=2)
    leader = ps[0][0]
    follower = next(r for r in replicas if r != leader)
    remaining = next(r for r in replicas if r not in (leader, follower))

    chk = Checker(bootstraps(nodes), "cp", 1, writer="b", rate=100, **{"message.timeout.ms": 5000}).start()
    chk.wait_acks_after(chk.start_time, 30, count=20)
    time.sleep(1)
    t_kill = time.monotonic()
    nodes[leader].kill()
    nodes[follower].kill()
    wait_for(lambda: new_leader(nodes[controller].bootstrap, "cp", 0, [leader, follower]), 30,
             "the remaining replica to be named leader", 0.05)
    named = time.monotonic() - t_kill
    time.sleep(4)
    answer = probe(bootstraps(nodes), "cp")
    time.sleep(max(0.0, t_kill + 8 - time.monotonic()))
    t_restart = time.monotonic()
    late = acked_between(chk, t_kill + 0.5, t_restart)
    outage_errors = errors_between(chk, t_kill, t_restart)
    nodes[follower].start()
    healed = chk.wait_acks_after(t_restart, 30)
    nodes[leader].start()
    time.sleep(2)
    chk.stop()
    report = chk.verify(nodes[controller].bootstrap)
    print(f"\n[b5] killed leader {leader} and follower {follower} (replicas {replicas}, controller {controller}): "
          f"{remaining} named leader after {named:.3f}s; acks during the outage: {len(late)}; errors during the "
          f"outage: {outage_errors}; a probe without retries got {answer}; writes acknowledged {healed:.3f}s after restarting {follower}; "
          f"{report.summary()}")
    assert not late, (f"{len(late)} writes acknowledged with 1 of 3 replicas up in a W=2 R=2 topic, e.g. "
                      f"{[(s.value, s.offset, round(s.acked - t_kill, 3)) for s in late[:5]]}")
    assert not answer.startswith("acked"), f"a probe write was acknowledged: {answer}"
    assert healed < 15, f"writes resumed only {healed:.2f}s after a replica returned"
    assert report.clean, report.summary()


def test_cp_topic_with_both_followers_down_refuses_writes_then_heals(cluster3):
    """3 nodes, so the metadata group loses its majority too: the leader stays leader and
    must not acknowledge acks=all writes (NOT_ENOUGH_REPLICAS or a timeout) while both
    followers are down; restarted, writes resume and nothing acknowledged is lost."""
    nodes = cluster3
    wait_formed(nodes, 3)
    ps = create(nodes[1].bootstrap, "cp3", write_quorum=2, read_quorum=2)
    leader = ps[0][0]
    followers = [i for i in nodes if i != leader]

    chk = Checker(bootstraps(nodes), "cp3", 1, writer="b3", rate=100, **{"message.timeout.ms": 5000}).start()
    chk.wait_acks_after(chk.start_time, 30, count=20)
    time.sleep(1)
    t_kill = time.monotonic()
    for f in followers:
        nodes[f].kill()
    time.sleep(4)
    answer = probe(bootstraps(nodes), "cp")
    time.sleep(max(0.0, t_kill + 8 - time.monotonic()))
    t_restart = time.monotonic()
    late = acked_between(chk, t_kill + 0.5, t_restart)
    outage_errors = errors_between(chk, t_kill, t_restart)
    for f in followers:
        nodes[f].spawn()
    for f in followers:
        nodes[f].wait_listening()
    healed = chk.wait_acks_after(t_restart, 45)
    time.sleep(2)
    chk.stop()
    report = chk.verify(bootstraps(nodes))
    print(f"\n[b3] killed followers {followers} of leader {leader}: acks during the outage: {len(late)}; errors "
          f"during the outage: {outage_errors}; a probe without retries got {answer}; writes acknowledged "
          f"{healed:.3f}s after the restart; "
          f"{report.summary()}")
    assert not late, (f"{len(late)} writes acknowledged with 1 of 3 replicas up in a W=2 topic, e.g. "
                      f"{[(s.value, s.offset, round(s.acked - t_kill, 3)) for s in late[:5]]}")
    assert not answer.startswith("acked"), f"a probe write was acknowledged: {answer}"
    assert healed < 20, f"writes resumed only {healed:.2f}s after the followers returned"
    assert report.clean, report.summary()


# --- c. an AP topic stays writable ------------------------------------------------------------

def test_ap_topic_keeps_accepting_writes_with_two_of_three_replicas_down(cluster5):
    nodes = cluster5
    controller = wait_formed(nodes, 5)
    replicas = [i for i in nodes if i != controller][:3]
    ps = create(nodes[controller].bootstrap, "ap", assignment=[replicas], write_quorum=1, read_quorum=1)
    leader = ps[0][0]
    follower = next(r for r in replicas if r != leader)
    remaining = next(r for r in replicas if r not in (leader, follower))

    # Not idempotent: an AP failover may lose the producer's last acknowledged records
    # (the topic's contract), and an idempotent producer then sees a sequence gap at
    # the new leader and fails fatally (OUT_OF_ORDER_SEQUENCE_NUMBER), as against
    # Kafka after an unclean election.
    chk = Checker(bootstraps(nodes), "ap", 1, writer="c", rate=200,
                  **{"enable.idempotence": False, "max.in.flight.requests.per.connection": 1}).start()
    chk.wait_acks_after(chk.start_time, 30, count=20)
    time.sleep(1)
    t_kill = time.monotonic()
    nodes[leader].kill()
    nodes[follower].kill()
    wait_for(lambda: new_leader(nodes[controller].bootstrap, "ap", 0, [leader, follower]), 30,
             "the remaining replica to be named leader", 0.05)
    named = time.monotonic() - t_kill
    chk.wait_acks_after(t_kill, 30)
    time.sleep(2)
    chk.stop()
    resumed = chk.resumed_after(t_kill)
    report = chk.verify(nodes[controller].bootstrap)
    print(f"\n[c] killed leader {leader} and follower {follower} of an AP topic: {remaining} named leader after "
          f"{named:.3f}s, writes acknowledged again after {resumed:.3f}s; {report.summary()}")
    assert resumed < 5, f"an AP topic took {resumed:.2f}s to accept writes again"
    assert not chk.fatal, chk.fatal
    # An AP topic may lose acknowledged records (its contract). A producer without
    # idempotence may itself write a retried record twice, so duplicates and order are
    # checked in the CP tests and the simulation, not here.


# --- d. the whole cluster crashes ------------------------------------------------------------

FLUSH_MS = 1000


def test_whole_cluster_crash_with_and_without_write_caching(cluster3):
    nodes = cluster3
    wait_formed(nodes, 3)
    create(nodes[1].bootstrap, "cached", 3, flush_ms=FLUSH_MS)
    create(nodes[1].bootstrap, "synced", 3, write_caching="false")
    cached = Checker(bootstraps(nodes), "cached", 3, writer="dc", rate=150).start()
    synced = Checker(bootstraps(nodes), "synced", 3, writer="ds", rate=150).start()
    for c in (cached, synced):
        c.wait_acks_after(c.start_time, 30, count=20)
    time.sleep(2)
    t_kill = time.monotonic()
    for n in nodes.values():
        n.proc.kill()
    for n in nodes.values():
        n.proc.wait()
    for n in nodes.values():
        n.spawn()
    for n in nodes.values():
        n.wait_listening()
    t_up = time.monotonic()
    back = {c.writer: c.wait_acks_after(t_kill, 60) for c in (cached, synced)}
    time.sleep(1)
    for c in (cached, synced):
        c.stop()
    rc, rs = cached.verify(bootstraps(nodes)), synced.verify(bootstraps(nodes))
    cached_lost_recent = [s for s in rc.lost if s.acked >= t_kill - FLUSH_MS / 1000 - 0.5]
    print(f"\n[d] all 3 killed; listening again after {t_up - t_kill:.2f}s, writes acknowledged again after {back}")
    print(f"[d] write.caching=true (flush.ms={FLUSH_MS}): {rc.summary()}")
    print(f"[d] write.caching=false: {rs.summary()}")
    assert rs.clean, f"write.caching=false lost or changed acknowledged records: {rs.summary()}"
    assert len(cached_lost_recent) == len(rc.lost), (
        f"write caching lost records acknowledged before the flush window: "
        f"{[(s.value, round(t_kill - s.acked, 3)) for s in rc.lost if s not in cached_lost_recent][:10]}")
    assert not rc.moved and not rc.duplicated and not rc.reordered, rc.summary()
    # the cluster serves again: a fresh produce and consume on a new topic
    create(nodes[2].bootstrap, "after", 1)
    fresh = Checker(nodes[3].bootstrap, "after", 1, writer="after", rate=200).start()
    fresh.wait_acks_after(fresh.start_time, 30, count=50)
    fresh.stop()
    rf = fresh.verify(nodes[1].bootstrap)
    assert rf.clean and rf.acked >= 50, rf.summary()


# --- e. a network partition isolates the leader ------------------------------------------------

PINNED = textwrap.dedent("""
    import json, sys, time
    from confluent_kafka import Producer
    bootstrap, topic, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    out = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 2,
                  "message.timeout.ms": 4000, "request.timeout.ms": 2000, "retry.backoff.ms": 50,
                  "retry.backoff.max.ms": 250, "topic.metadata.refresh.interval.ms": 1000})
    def report(rec):
        def cb(err, msg):
            rec["acked"] = time.monotonic()
            if err is None:
                rec["offset"] = msg.offset()
            else:
                rec["error"] = err.name()
        return cb
    end = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < end:
        rec = {"value": f"pin-{seq:06d}", "sent": time.monotonic()}
        out.append(rec)
        p.produce(topic, value=rec["value"].encode(), partition=0, on_delivery=report(rec))
        seq += 1
        p.poll(0.02)
    p.flush(15)
    json.dump(out, sys.stdout)
""")


def segment_bytes(datadir: Path, topic: str) -> bytes:
    return b"".join(f.read_bytes() for f in datadir.rglob("*.log") if f.parent.name.startswith(f"{topic}-"))


def test_isolated_leader_acknowledges_nothing_and_is_truncated(net3):
    c = net3
    everyone = ",".join(c.bootstrap(i) for i in c.ids)
    admin_bootstrap = c.bootstrap(1)
    controller = wait_for(lambda: (lambda d: d["controller_id"] if len(d["brokers"]) == 3 and d["controller_id"] in c.ids
                                   else None)(describe_at(admin_bootstrap)), 60, "the cluster to form", 0.3)
    old = next(i for i in c.ids if i != controller)
    majority = [i for i in c.ids if i != old]
    ps = create(c.bootstrap(controller), "iso", assignment=[[old] + majority])
    assert ps[0][0] == old, f"the first replica should lead: {ps}"

    chk = Checker(everyone, "iso", 1, writer="m", rate=100).start()
    chk.wait_acks_after(chk.start_time, 30, count=20)
    pinned = subprocess.Popen(["ip", "netns", "exec", c.ns(old), sys.executable, "-c", PINNED, c.bootstrap(old),
                               "iso", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    t_cut = time.monotonic()
    c.cut(old)
    try:
        leader = wait_for(lambda: new_leader(c.bootstrap(majority[0]), "iso", 0, [old]), 30,
                          "the majority to name a new leader", 0.05)
        t_elect = time.monotonic()
        time.sleep(1)
        fresh = probe(",".join(c.bootstrap(i) for i in majority), "iso")
        out, err = pinned.communicate(timeout=60)
    finally:
        c.heal(old)
    t_heal = time.monotonic()
    assert pinned.returncode == 0, err[-2000:]
    pins = json.loads(out)
    pin_sends = [Send(r["value"], 0, i, r["sent"], r.get("acked"), r.get("offset"), r.get("error"))
                 for i, r in enumerate(pins)]
    after_election = [s for s in pin_sends if s.ok and s.sent >= t_elect]
    acked_after_cut = [s for s in pin_sends if s.ok and s.acked > t_cut]
    pin_errors = {}
    for s in pin_sends:
        if s.error:
            pin_errors[s.error] = pin_errors.get(s.error, 0) + 1

    # the healed node follows again: it rejoins the in-sync replicas
    wait_for(lambda: sorted(partitions_of(c.bootstrap(majority[0]), "iso")[0][2]) == sorted(c.ids), 30,
             "the healed node back in sync", 0.2)
    time.sleep(1)
    chk.stop()
    resumed = chk.resumed_after(t_cut)
    report = chk.verify(everyone)
    log = read_log(everyone, "iso", 1)
    pin_report = analyze(pin_sends, log, prefix="pin-")
    in_log = {v for _, v in log[0]}
    tail = [s.value for s in pin_sends if not s.ok and s.value not in in_log]

    def truncated():
        held = segment_bytes(c.workdir / f"data{old}", "iso")
        left = [v for v in tail if v.encode() in held]
        return True if not left else (False, left[:5], len(left))

    truncated_after = None
    try:
        wait_for(lambda: truncated() is True, 30, "the old leader to truncate its unacknowledged tail", 0.5)
        truncated_after = time.monotonic() - t_heal
    finally:
        print(f"\n[e] isolated leader {old} (controller {controller}); majority named {leader} "
              f"{t_elect - t_cut:.3f}s after the cut, majority writes resumed {resumed:.3f}s after the cut (healed "
              f"{t_heal - t_cut:.2f}s after it; a fresh producer to the majority during the cut got {fresh}); "
              f"pinned producer: {len(pin_sends)} sent, {sum(s.ok for s in pin_sends)} acked "
              f"({len(acked_after_cut)} acked after the cut, {len(after_election)} sent after the election and "
              f"acked), errors {pin_errors}; old leader's unacknowledged tail ({len(tail)} records not in the "
              f"final log) gone from its files {truncated_after if truncated_after is None else round(truncated_after, 2)}s "
              f"after healing; majority: {report.summary()}; pinned: {pin_report.summary()}")
    # the majority serves during the cut; the long-lived idempotent producer that was
    # connected to the isolated leader may resume only later (librdkafka drains its
    # in-flight requests to the unreachable node first): measured, not asserted
    assert fresh.startswith("acked"), f"the majority did not take a write during the cut: {fresh}"
    assert not after_election, (f"the isolated old leader acknowledged {len(after_election)} records sent after "
                                f"the election: {[(s.value, s.offset) for s in after_election[:5]]}")
    assert report.clean, report.summary()
    assert not pin_report.lost and not pin_report.moved and not pin_report.duplicated, pin_report.summary()


def describe_at(bootstrap: str) -> dict:
    from kafka import KafkaAdminClient
    a = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        return a.describe_cluster()
    finally:
        a.close()
