"""The kafka-python driver. Contract: tests/clients/README.md."""

from __future__ import annotations

import time

from common import Pacer, emit, log, main, stdin_eof_event
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata


def admin(args) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=args.bootstrap)


def admin_create(args):
    a = admin(args)
    a.create_topics([NewTopic(args.topic, args.partitions, args.replication_factor)])
    [t] = a.describe_topics([args.topic])
    emit("topic", name=t["name"], partitions=len(t["partitions"]))
    res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, args.topic)], config_filter="all")
    entries = res["topic"][args.topic]
    emit("configs", configs={k: (v.get("value") if isinstance(v, dict) else v) for k, v in entries.items()})
    emit("topics", topics=sorted(a.list_topics()))
    a.close()


def admin_groups(args):
    a = admin(args)
    groups = a.list_groups()
    emit("groups", groups=sorted(g["group_id"] if isinstance(g, dict) else g[0] for g in groups))
    desc = a.describe_groups([args.group])[args.group]
    members = []
    for m in desc["members"]:
        assignment = m.get("member_assignment") or {}
        parts = sorted(p for t in assignment.get("assigned_partitions", []) for p in t["partitions"])
        members.append({"member_id": m["member_id"], "client_id": m["client_id"], "partitions": parts})
    emit("group", group=args.group, state=desc["group_state"], members=members)
    a.close()


def admin_delete(args):
    a = admin(args)
    a.delete_topics([args.topic])
    deadline = time.monotonic() + 30
    while args.topic in a.list_topics():
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {args.topic} still listed 30 s after deletion")
        time.sleep(0.2)
    emit("deleted", topic=args.topic)
    a.close()


def produce(args):
    p = KafkaProducer(bootstrap_servers=args.bootstrap, compression_type=args.compression)
    counts = {"acked": 0, "failed": 0}

    def on_ok(i):
        def cb(md):
            counts["acked"] += 1
            emit("ack", i=i, p=md.partition, o=md.offset)
        return cb

    def on_err(i):
        def cb(exc):
            counts["failed"] += 1
            emit("fail", i=i, err=f"{type(exc).__name__}: {exc}")
        return cb

    pacer = Pacer(args.rate)
    for i in range(args.count):
        pacer.wait(i)
        fut = p.send(args.topic, key=f"k{i % args.keys}".encode(), value=str(i).encode())
        fut.add_callback(on_ok(i)).add_errback(on_err(i))
    p.flush(timeout=180)
    idempotent = bool(p.config.get("enable_idempotence"))
    p.close()
    emit("done", acked=counts["acked"], failed=counts["failed"], idempotent=idempotent)


class _Listener(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked):
        emit("revoked", partitions=sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned):
        emit("assigned", partitions=sorted(tp.partition for tp in assigned))


def consume(args):
    stop = stdin_eof_event()
    c = KafkaConsumer(bootstrap_servers=args.bootstrap, group_id=args.group, client_id=args.name,
                      auto_offset_reset="earliest", enable_auto_commit=False)
    c.subscribe([args.topic], listener=_Listener())
    emit("ready")
    while not stop.is_set():
        try:
            batches = c.poll(timeout_ms=200)
        except KafkaError as e:
            log(f"poll error: {e!r}")
            continue
        nxt: dict[int, int] = {}
        for tp, recs in batches.items():
            for r in recs:
                emit("rec", p=r.partition, o=r.offset, k=r.key.decode(), v=r.value.decode())
                nxt[tp.partition] = r.offset + 1
        if not nxt:
            continue
        offsets = {str(p): o for p, o in sorted(nxt.items())}
        emit("commit_try", offsets=offsets)
        try:
            c.commit({TopicPartition(args.topic, p): OffsetAndMetadata(o, "", -1) for p, o in nxt.items()})
            emit("commit_ok", offsets=offsets)
        except KafkaError as e:
            emit("commit_fail", err=f"{type(e).__name__}: {e}")
    c.close(autocommit=False)
    emit("closed")


COMMANDS = {"admin-create": admin_create, "admin-groups": admin_groups, "admin-delete": admin_delete,
            "produce": produce, "consume": consume}

if __name__ == "__main__":
    main(lambda args: COMMANDS[args.cmd](args))
