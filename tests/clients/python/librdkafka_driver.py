"""The librdkafka driver (confluent-kafka for Python). Contract: tests/clients/README.md."""

from __future__ import annotations

import time

from common import Pacer, emit, log, main, stdin_eof_event
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

STATE_NAMES = {
    "STABLE": "Stable", "EMPTY": "Empty", "PREPARING_REBALANCE": "PreparingRebalance",
    "COMPLETING_REBALANCE": "CompletingRebalance", "DEAD": "Dead", "UNKNOWN": "Unknown",
}


def admin(args) -> AdminClient:
    return AdminClient({"bootstrap.servers": args.bootstrap})


def admin_create(args):
    a = admin(args)
    a.create_topics([NewTopic(args.topic, args.partitions, args.replication_factor)])[args.topic].result(60)
    md = a.list_topics(args.topic, timeout=30)
    emit("topic", name=args.topic, partitions=len(md.topics[args.topic].partitions))
    res = ConfigResource(ConfigResource.Type.TOPIC, args.topic)
    entries = a.describe_configs([res])[res].result(30)
    emit("configs", configs={k: v.value for k, v in entries.items()})
    emit("topics", topics=sorted(a.list_topics(timeout=30).topics))


def admin_groups(args):
    a = admin(args)
    listing = a.list_consumer_groups().result(30)
    emit("groups", groups=sorted(g.group_id for g in listing.valid))
    desc = a.describe_consumer_groups([args.group])[args.group].result(30)
    members = []
    for m in desc.members:
        parts = sorted(tp.partition for tp in (m.assignment.topic_partitions if m.assignment else []))
        members.append({"member_id": m.member_id, "client_id": m.client_id, "partitions": parts})
    emit("group", group=args.group, state=STATE_NAMES.get(desc.state.name, desc.state.name), members=members)


def admin_delete(args):
    a = admin(args)
    a.delete_topics([args.topic])[args.topic].result(60)
    deadline = time.monotonic() + 30
    while args.topic in a.list_topics(timeout=30).topics:
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {args.topic} still listed 30 s after deletion")
        time.sleep(0.2)
    emit("deleted", topic=args.topic)


def produce(args):
    conf = {"bootstrap.servers": args.bootstrap, "compression.type": args.compression}
    p = Producer(conf)
    counts = {"acked": 0, "failed": 0}

    def report(err, msg):
        i = int(msg.value())
        if err is not None:
            counts["failed"] += 1
            emit("fail", i=i, err=str(err))
        else:
            counts["acked"] += 1
            emit("ack", i=i, p=msg.partition(), o=msg.offset())

    pacer = Pacer(args.rate)
    for i in range(args.count):
        pacer.wait(i)
        while True:
            try:
                p.produce(args.topic, key=f"k{i % args.keys}", value=str(i), on_delivery=report)
                break
            except BufferError:  # local queue full: let deliveries drain
                p.poll(0.05)
        p.poll(0)
    remaining = p.flush(180)
    if remaining:
        raise RuntimeError(f"{remaining} records still undelivered after 180 s")
    # librdkafka's default: enable.idempotence=false
    emit("done", acked=counts["acked"], failed=counts["failed"], idempotent=False)


def consume(args):
    stop = stdin_eof_event()
    c = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": args.name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })

    def on_assign(consumer, parts):
        emit("assigned", partitions=sorted(tp.partition for tp in parts))

    def on_revoke(consumer, parts):
        emit("revoked", partitions=sorted(tp.partition for tp in parts))

    c.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    emit("ready")
    while not stop.is_set():
        msgs = c.consume(num_messages=500, timeout=0.2)
        nxt: dict[int, int] = {}
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    log(f"consume error: {m.error()}")
                continue
            emit("rec", p=m.partition(), o=m.offset(), k=m.key().decode(), v=m.value().decode())
            nxt[m.partition()] = m.offset() + 1
        if not nxt:
            continue
        offsets = {str(p): o for p, o in sorted(nxt.items())}
        emit("commit_try", offsets=offsets)
        try:
            c.commit(offsets=[TopicPartition(args.topic, p, o) for p, o in nxt.items()], asynchronous=False)
            emit("commit_ok", offsets=offsets)
        except KafkaException as e:
            emit("commit_fail", err=str(e))
    c.close()
    emit("closed")


COMMANDS = {"admin-create": admin_create, "admin-groups": admin_groups, "admin-delete": admin_delete,
            "produce": produce, "consume": consume}

if __name__ == "__main__":
    main(lambda args: COMMANDS[args.cmd](args))
