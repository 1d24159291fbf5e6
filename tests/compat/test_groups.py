"""Consumer groups with real clients: subscribe(), rebalances as members leave, rejoin
and die, cooperative-sticky assignment, committed offsets across a SIGKILL, and the
admin clients' view of groups."""

import os
import signal
import subprocess
import sys
import time

from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer
from kafka import TopicPartition as KTopicPartition

from helpers import Rec, ck_admin, ck_conf, ck_produce, create_topic, wait_topic, wait_until

T = 60
SESSION_MS = 6000


def _records(n: int, tag: str) -> list[Rec]:
    return [Rec(key=f"k{i % 37}".encode(), value=f"{tag}-{i}".encode()) for i in range(n)]


def _group_consumer(bootstrap: str, group: str, **extra) -> Consumer:
    conf = {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": 500}
    conf.update(extra)
    return Consumer(ck_conf(bootstrap, **conf))


def _assigned(c: Consumer) -> set[int]:
    return {tp.partition for tp in c.assignment()}


def _poll_all(consumers, seen: dict, rounds: int = 1):
    for _ in range(rounds):
        for c in consumers:
            m = c.poll(0.05)
            if m is not None and m.error() is None:
                seen[(m.partition(), m.offset())] = m.value()


def test_three_members_share_partitions_and_one_leaves_and_rejoins(broker, topic_name):
    create_topic(broker, topic_name, 6)
    wait_topic(broker, topic_name, 6)
    group = f"g-{topic_name}"
    first = _records(600, "a")
    ck_produce(broker, topic_name, first)
    members = [_group_consumer(broker, group) for _ in range(3)]
    for c in members:
        c.subscribe([topic_name])
    seen: dict = {}
    try:
        def balanced():
            _poll_all(members, seen)
            parts = [_assigned(c) for c in members]
            return all(len(p) == 2 for p in parts) and set().union(*parts) == set(range(6))
        wait_until(balanced, T, "6 partitions spread 2/2/2 over 3 members")
        wait_until(lambda: (_poll_all(members, seen, 3), len(seen) >= len(first))[1], T,
                   "every record of the first batch consumed")

        # One member leaves mid-stream: the other two take over its partitions.
        members[2].close()
        ck_produce(broker, topic_name, _records(300, "b"))

        def two_cover_all():
            _poll_all(members[:2], seen)
            parts = [_assigned(c) for c in members[:2]]
            return set().union(*parts) == set(range(6)) and all(parts)
        wait_until(two_cover_all, T, "the two remaining members cover all 6 partitions")

        # It rejoins: three members again.
        members[2] = _group_consumer(broker, group)
        members[2].subscribe([topic_name])
        wait_until(balanced, T, "2/2/2 again after the rejoin")
        ck_produce(broker, topic_name, _records(300, "c"))
        wait_until(lambda: (_poll_all(members, seen, 3), len(seen) >= 1200)[1], T,
                   "every record consumed by the group")
        values = {v.decode() for v in seen.values()}
        assert {f"a-{i}" for i in range(600)} <= values
        assert {f"b-{i}" for i in range(300)} <= values
        assert {f"c-{i}" for i in range(300)} <= values
    finally:
        for c in members:
            try:
                c.close()
            except RuntimeError:
                pass


def test_committed_offsets_resume_exactly_after_sigkill(own_broker, topic_name):
    b = own_broker
    create_topic(b.bootstrap, topic_name, 3)
    wait_topic(b.bootstrap, topic_name, 3)
    group = f"g-{topic_name}"
    acks = ck_produce(b.bootstrap, topic_name, _records(300, "x"))
    ends: dict[int, int] = {}
    for p, o in acks:
        ends[p] = max(ends.get(p, 0), o + 1)
    c = _group_consumer(b.bootstrap, group)
    c.subscribe([topic_name])
    got: dict = {}
    wait_until(lambda: (_poll_all([c], got, 5), len(got) >= 150)[1], T, "half the records consumed")
    # Commit the position reached on each partition.
    positions = [tp for tp in c.position(list(c.assignment())) if tp.offset >= 0]
    c.commit(offsets=positions, asynchronous=False)
    committed = {tp.partition: tp.offset for tp in positions}
    c.close()

    b.kill()
    b.start()

    c = _group_consumer(b.bootstrap, group)
    try:
        tps = [TopicPartition(topic_name, p) for p in range(3)]
        back = wait_until(lambda: c.committed(tps, timeout=5), T, "committed offsets after restart")
        assert {tp.partition: tp.offset for tp in back if tp.offset >= 0} == committed
        c.subscribe([topic_name])
        firsts: dict[int, int] = {}

        def first_offsets():
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                firsts.setdefault(m.partition(), m.offset())
            return all(p in firsts for p in ends if committed.get(p, 0) < ends[p])
        wait_until(first_offsets, T, "records after the committed offsets")
        for p, o in firsts.items():
            assert o == committed.get(p, 0), f"partition {p} resumed at {o}, committed {committed.get(p)}"
    finally:
        c.close()


def test_cooperative_sticky_assignment_moves_only_what_it_must(broker, topic_name):
    create_topic(broker, topic_name, 4)
    wait_topic(broker, topic_name, 4)
    group = f"g-{topic_name}"
    extra = {"partition.assignment.strategy": "cooperative-sticky"}
    a = _group_consumer(broker, group, **extra)
    a.subscribe([topic_name])
    seen: dict = {}
    try:
        wait_until(lambda: (_poll_all([a], seen), _assigned(a) == set(range(4)))[1], T,
                   "the first member owns all 4 partitions")
        b = _group_consumer(broker, group, **extra)
        b.subscribe([topic_name])
        try:
            def split():
                _poll_all([a, b], seen)
                pa, pb = _assigned(a), _assigned(b)
                return len(pa) == 2 and len(pb) == 2 and pa | pb == set(range(4))
            wait_until(split, T, "cooperative rebalance to 2/2")
            kept = _assigned(a)
            ck_produce(broker, topic_name, _records(100, "s"))
            wait_until(lambda: (_poll_all([a, b], seen, 3), len(seen) >= 100)[1], T, "records consumed")
            assert _assigned(a) == kept, "sticky: the first member kept its partitions"
        finally:
            b.close()
        wait_until(lambda: (_poll_all([a], seen), _assigned(a) == set(range(4)))[1], T,
                   "the first member gets all partitions back after the other leaves")
    finally:
        a.close()


def test_kafka_python_group_commits_and_reads_back(broker, topic_name):
    create_topic(broker, topic_name, 2)
    wait_topic(broker, topic_name, 2)
    group = f"g-{topic_name}"
    ck_produce(broker, topic_name, _records(100, "kp"))
    c = KafkaConsumer(topic_name, bootstrap_servers=broker, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=SESSION_MS, heartbeat_interval_ms=500,
                      consumer_timeout_ms=1000)
    try:
        got = []
        deadline = time.monotonic() + T
        while len(got) < 100 and time.monotonic() < deadline:
            for batch in c.poll(timeout_ms=500).values():
                got.extend(batch)
        assert len(got) == 100
        c.commit()
        for p in range(2):
            tp = KTopicPartition(topic_name, p)
            assert c.committed(tp) == c.position(tp)
        assert sum(c.committed(KTopicPartition(topic_name, p)) for p in range(2)) == 100
    finally:
        c.close()


_MEMBER_SCRIPT = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "broker.address.family": "v4", "group.id": sys.argv[2],
              "session.timeout.ms": %d, "heartbeat.interval.ms": 500, "auto.offset.reset": "earliest"})
c.subscribe([sys.argv[3]])
while True:
    c.poll(0.2)
    if c.assignment():
        print("assigned", flush=True)
""" % SESSION_MS


def test_a_member_killed_with_sigkill_is_evicted_after_its_session_timeout(broker, topic_name):
    create_topic(broker, topic_name, 4)
    wait_topic(broker, topic_name, 4)
    group = f"g-{topic_name}"
    proc = subprocess.Popen([sys.executable, "-c", _MEMBER_SCRIPT, broker, group, topic_name],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    a = _group_consumer(broker, group)
    try:
        assert proc.stdout.readline().strip() == "assigned"
        a.subscribe([topic_name])
        seen: dict = {}
        wait_until(lambda: (_poll_all([a], seen), len(_assigned(a)) == 2)[1], T, "2 of 4 partitions each")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        wait_until(lambda: (_poll_all([a], seen), _assigned(a) == set(range(4)))[1], T,
                   "the survivor owns every partition once the dead member is evicted")
        took = time.monotonic() - killed_at
        # Evicted by its session timeout (not by a leave), then one rebalance.
        assert took >= SESSION_MS / 1000 - 1, f"reassigned after {took:.1f}s, before the session timeout"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        a.close()


def test_admin_clients_list_describe_and_delete_groups(broker, topic_name):
    create_topic(broker, topic_name, 2)
    wait_topic(broker, topic_name, 2)
    group = f"g-{topic_name}"
    c = _group_consumer(broker, group)
    c.subscribe([topic_name])
    seen: dict = {}
    admin = ck_admin(broker)
    try:
        wait_until(lambda: (_poll_all([c], seen), _assigned(c) == {0, 1})[1], T, "the member owns both partitions")

        def listed():
            r = admin.list_consumer_groups(request_timeout=10).result()
            return [g for g in r.valid if g.group_id == group]
        wait_until(listed, T, "the group in ListGroups")
        d = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
        assert d.state.name == "STABLE"
        assert len(d.members) == 1
        assert {tp.partition for tp in d.members[0].assignment.topic_partitions} == {0, 1}
        assert d.members[0].host.lstrip("/") == "127.0.0.1"

        ka = KafkaAdminClient(bootstrap_servers=broker)
        try:
            assert group in [g["group_id"] for g in ka.list_groups()]
            kd = ka.describe_groups([group])[group]
            assert kd["error"] is None
            assert kd["group_state"] == "Stable" and len(kd["members"]) == 1
        finally:
            ka.close()
        c.commit(offsets=[TopicPartition(topic_name, 0, 1)], asynchronous=False)
    finally:
        c.close()

    def deleted():
        admin.delete_consumer_groups([group], request_timeout=10)[group].result()
        return True
    wait_until(deleted, T, "the emptied group deleted")
    back = Consumer(ck_conf(broker, **{"group.id": group}))
    try:
        (tp,) = back.committed([TopicPartition(topic_name, 0)], timeout=10)
        assert tp.offset < 0, "offsets went with the group"
    finally:
        back.close()


def to_coordinator(bootstrap: str, group: str, request):
    """`request` (a kafka-python protocol message) sent to `group`'s coordinator; its answer."""
    from kafka import KafkaAdminClient

    a = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        async def send():
            return await a._manager.send(request, node_id=await a._find_coordinator_id(group))

        return a._manager.run(send)
    finally:
        a.close()


def test_offsets_of_unknown_topics_are_refused_per_partition(broker, topic_name):
    """As Kafka answers: OffsetCommit stores the partitions that exist and answers
    UNKNOWN_TOPIC_OR_PARTITION for a topic or partition that does not (librdkafka's
    0030_offset_commit checks it); OffsetDelete likewise for an unknown topic."""
    from kafka.protocol.consumer.group import OffsetCommitRequest, OffsetDeleteRequest

    create_topic(broker, topic_name, 1)
    wait_topic(broker, topic_name, 1)
    group, nope = f"{topic_name}-g", f"{topic_name}-nope"
    ct, cp = OffsetCommitRequest.OffsetCommitRequestTopic, \
        OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition
    response = to_coordinator(broker, group, OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=-1, member_id="", max_version=8, topics=[
            ct(name=topic_name, partitions=[cp(partition_index=0, committed_offset=5),
                                            cp(partition_index=7, committed_offset=5)]),
            ct(name=nope, partitions=[cp(partition_index=0, committed_offset=5)])]))
    got = {(t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions}
    assert got == {(topic_name, 0): 0, (topic_name, 7): 3, (nope, 0): 3}, got
    c = Consumer(ck_conf(broker, **{"group.id": group, "enable.auto.commit": False}))
    try:
        committed = c.committed([TopicPartition(topic_name, 0), TopicPartition(nope, 0)], timeout=10)
        assert [tp.offset for tp in committed] == [5, -1001], committed
    finally:
        c.close()

    dt, dp = OffsetDeleteRequest.OffsetDeleteRequestTopic, \
        OffsetDeleteRequest.OffsetDeleteRequestTopic.OffsetDeleteRequestPartition
    response = to_coordinator(broker, group, OffsetDeleteRequest(group_id=group, topics=[
        dt(name=topic_name, partitions=[dp(partition_index=0)]), dt(name=nope, partitions=[dp(partition_index=0)])]))
    assert response.error_code == 0, response
    got = {(t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions}
    assert got == {(topic_name, 0): 0, (nope, 0): 3}, got
