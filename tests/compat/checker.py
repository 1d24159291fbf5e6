"""A producer-side checker for replication tests (in the spirit of Jepsen's queue checks).

`Checker` runs one confluent-kafka producer (acks=all, idempotent) in a background
thread, sending unique values `<writer>-<seq>` round-robin to the partitions of a topic
at a steady rate, and records for every value its partition, its send time and, once
the delivery report arrives, the acknowledged offset (or the error) and the ack time.

After the run, `verify()` rereads every partition from its beginning up to its high
watermark and `analyze()` compares the log with the acknowledgements:

- lost:       acknowledged, absent from the log
- moved:      present, but at another offset than the acknowledged one
- duplicated: one value at two or more offsets
- reordered:  within a partition, two acknowledged values of one writer whose log order
              differs from their send (= acknowledgement) order
- stall:      the longest time between two consecutive successful acks of a partition
              during the run (what a producer waits through a failover)

`analyze()` is pure Python (a log given as {partition: [(offset, value)]}), so the
checker checks itself without a broker (test_checker_reports_what_it_should below).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


@dataclass
class Send:
    value: str
    partition: int
    seq: int
    sent: float  # time.monotonic()
    acked: float | None = None  # when the delivery report came (success or error)
    offset: int | None = None  # acknowledged offset
    error: str | None = None  # error name when not acknowledged

    @property
    def ok(self) -> bool:
        return self.offset is not None


@dataclass
class Report:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    pending: int = 0  # no delivery report by the end
    lost: list = field(default_factory=list)  # [Send]
    moved: list = field(default_factory=list)  # [(Send, [log offsets])]
    duplicated: list = field(default_factory=list)  # [(value, [offsets])]
    reordered: list = field(default_factory=list)  # [(partition, (value, offset), (value, offset))]
    unacked_present: int = 0  # failed or pending, yet in the log (allowed: the ack was lost)
    log_records: int = 0
    stall: float = 0.0  # longest gap between consecutive acks of one partition
    stall_partition: int | None = None
    stall_at: float | None = None  # run-relative time the longest gap began
    errors: dict = field(default_factory=dict)  # error name -> count

    @property
    def clean(self) -> bool:
        return not (self.lost or self.moved or self.duplicated or self.reordered)

    def summary(self) -> str:
        def first(xs, n=5):
            return xs[:n]
        return (f"sent={self.sent} acked={self.acked} failed={self.failed} pending={self.pending} "
                f"log={self.log_records} lost={len(self.lost)} moved={len(self.moved)} "
                f"duplicated={len(self.duplicated)} reordered={len(self.reordered)} "
                f"unacked_present={self.unacked_present} stall={self.stall:.3f}s "
                f"(partition {self.stall_partition} at +{(self.stall_at or 0):.2f}s) errors={self.errors}"
                + (f"\n  lost e.g. {[(s.value, s.partition, s.offset) for s in first(self.lost)]}" if self.lost else "")
                + (f"\n  moved e.g. {[(s.value, s.offset, o) for s, o in first(self.moved)]}" if self.moved else "")
                + (f"\n  duplicated e.g. {first(self.duplicated)}" if self.duplicated else "")
                + (f"\n  reordered e.g. {first(self.reordered)}" if self.reordered else ""))


def stalls(sends: list[Send], start: float, end: float) -> dict[int, tuple[float, float]]:
    """Per partition: (longest gap between consecutive successful acks, when it began
    relative to `start`), from the partition's first ack on, counting the run's end as
    an ack (a partition that never recovers stalls until the end)."""
    by_partition: dict[int, list[float]] = {}
    for s in sends:
        if s.ok and s.acked is not None:
            by_partition.setdefault(s.partition, []).append(s.acked)
    out = {}
    for p, times in by_partition.items():
        times = sorted(times) + [max(end, max(times))]
        gap, at = max(((b - a, a) for a, b in zip(times, times[1:])), default=(0.0, start))
        out[p] = (gap, at - start)
    return out


def analyze(sends: list[Send], log: dict[int, list[tuple[int, str]]], start: float = 0.0,
            end: float | None = None, prefix: str | None = None) -> Report:
    """Compares the acknowledgements in `sends` with `log` ({partition: [(offset, value)]}
    in log order). Values not starting with `prefix` (another writer's) are ignored."""
    r = Report(sent=len(sends))
    where: dict[str, list[tuple[int, int]]] = {}
    for p, records in log.items():
        for offset, value in records:
            if prefix is not None and not value.startswith(prefix):
                continue
            r.log_records += 1
            where.setdefault(value, []).append((p, offset))
    for value, at in where.items():
        if len(at) > 1:
            r.duplicated.append((value, at))
    for s in sends:
        if s.ok:
            r.acked += 1
            at = where.get(s.value)
            if not at:
                r.lost.append(s)
            elif (s.partition, s.offset) not in at:
                r.moved.append((s, at))
        else:
            if s.error is None:
                r.pending += 1
            else:
                r.failed += 1
                r.errors[s.error] = r.errors.get(s.error, 0) + 1
            if s.value in where:
                r.unacked_present += 1
    # per partition and writer, the acked values in send order must sit in increasing
    # log order (one writer sends one partition's values in sequence order)
    by_key: dict[tuple[int, str], list[Send]] = {}
    for s in sends:
        if s.ok and s.value in where:
            by_key.setdefault((s.partition, s.value.rsplit("-", 1)[0]), []).append(s)
    for (p, _writer), group in by_key.items():
        group.sort(key=lambda s: s.seq)
        prev = None
        for s in group:
            offsets = [o for q, o in where[s.value] if q == p]
            if not offsets:
                continue
            o = min(offsets)
            if prev is not None and o < prev[1]:
                r.reordered.append((p, prev, (s.value, o)))
            prev = (s.value, o)
    if end is None:
        end = max([s.acked for s in sends if s.acked is not None] + [start])
    per = stalls(sends, start, end)
    if per:
        p, (gap, at) = max(per.items(), key=lambda kv: kv[1][0])
        r.stall, r.stall_partition, r.stall_at = gap, p, at
    return r


def read_log(bootstrap: str, topic: str, partitions: int, timeout: float = 60.0) -> dict[int, list[tuple[int, str]]]:
    """Every record of every partition, from the beginning up to the high watermark
    (asked once, at the start): {partition: [(offset, value)]}."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "checker-verify", "enable.auto.commit": False,
                  "enable.partition.eof": True, "broker.address.family": "v4",
                  "fetch.wait.max.ms": 100})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        high = {}
        deadline = time.monotonic() + timeout
        for tp in tps:
            while True:
                try:
                    high[tp.partition] = c.get_watermark_offsets(tp, timeout=5, cached=False)[1]
                    break
                except Exception:  # noqa: BLE001 - a leader moving; ask again
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        out: dict[int, list[tuple[int, str]]] = {p: [] for p in range(partitions)}
        todo = {p for p in range(partitions) if high[p] > 0}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        while todo:
            assert time.monotonic() < deadline, f"reading {topic} back: partitions {sorted(todo)} unfinished, high {high}"
            for m in c.consume(num_messages=10000, timeout=0.5):
                p = m.partition()
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        if m.offset() >= high[p]:
                            todo.discard(p)
                        continue
                    continue
                out[p].append((m.offset(), (m.value() or b"").decode(errors="replace")))
                if m.offset() + 1 >= high[p]:
                    todo.discard(p)
            if todo:
                for tp in c.position([TopicPartition(topic, p) for p in todo]):
                    if tp.offset >= 0 and tp.offset >= high[tp.partition]:
                        todo.discard(tp.partition)
        return out
    finally:
        c.close()


class Checker:
    """Sends `<writer>-<seq>` to partitions 0..partitions-1 round-robin at `rate`
    records per second from a background thread, until stop()."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, writer: str = "w0", rate: float = 200.0,
                 **conf):
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.writer, self.rate = writer, rate
        self.sends: list[Send] = []
        self.fatal: list[str] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start_time = self.stop_time = None
        self.conf = {
            "bootstrap.servers": bootstrap, "broker.address.family": "v4",
            "acks": "all", "enable.idempotence": True, "linger.ms": 2,
            "message.timeout.ms": 15000, "request.timeout.ms": 2000,
            "retry.backoff.ms": 50, "retry.backoff.max.ms": 250,
            "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
            "topic.metadata.refresh.interval.ms": 1000,
            "socket.connection.setup.timeout.ms": 2000,
            "error_cb": self._on_error, "logger": logging.getLogger("rdkafka"),
        }
        self.conf.update(conf)

    def _on_error(self, err):
        if err.fatal():
            self.fatal.append(err.str())

    def start(self) -> "Checker":
        self.producer = Producer(self.conf)
        self.start_time = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"checker-{self.writer}", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        seq = 0
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now < next_at:
                self.producer.poll(min(next_at - now, 0.05))
                continue
            next_at += period
            if next_at < now - 1.0:  # fell far behind (a full queue): do not burst
                next_at = now
            s = Send(f"{self.writer}-{seq}", seq % self.partitions, seq, now)
            try:
                self.producer.produce(self.topic, value=s.value.encode(), partition=s.partition,
                                      on_delivery=self._report(s))
            except BufferError:
                self.producer.poll(0.05)
                continue
            except Exception as e:  # noqa: BLE001 - e.g. a fatal producer state
                s.error, s.acked = f"produce raised {e!r}", time.monotonic()
            with self.lock:
                self.sends.append(s)
            seq += 1
            self.producer.poll(0)

    @staticmethod
    def _report(s: Send):
        def cb(err, msg):
            s.acked = time.monotonic()
            if err is None:
                s.offset = msg.offset()
            else:
                s.error = err.name()
        return cb

    def stop(self, drain: float = 20.0) -> "Checker":
        """Stops sending; waits up to `drain` seconds for outstanding delivery reports."""
        self._stop.set()
        self._thread.join(10)
        self.stop_time = time.monotonic()
        self.producer.flush(drain)
        self.producer = None  # no reconnecting to nodes a test stops afterwards
        return self

    # --- observations during the run ---------------------------------------------------

    def snapshot(self) -> list[Send]:
        with self.lock:
            return list(self.sends)

    def acks_since(self, t: float, partition: int | None = None) -> list[Send]:
        return [s for s in self.snapshot() if s.ok and s.acked is not None and s.acked >= t
                and (partition is None or s.partition == partition)]

    def first_ack_after(self, t: float, partition: int | None = None) -> float | None:
        times = [s.acked for s in self.acks_since(t, partition)]
        return min(times) if times else None

    def resumed_after(self, t: float, partition: int | None = None) -> float | None:
        """Seconds from `t` to the first ack of a record *sent* after `t` (acks of
        records already in flight at `t` do not count)."""
        times = [s.acked for s in self.snapshot() if s.ok and s.sent > t
                 and (partition is None or s.partition == partition)]
        return min(times) - t if times else None

    def wait_acks_after(self, t: float, timeout: float, partitions=None, count: int = 1) -> float:
        """Waits until every partition in `partitions` (default all) has `count` acks
        after `t`; returns the latest of their first acks after `t`, minus `t`."""
        parts = list(range(self.partitions)) if partitions is None else list(partitions)
        deadline = time.monotonic() + timeout
        while True:
            firsts = []
            for p in parts:
                acks = sorted(s.acked for s in self.acks_since(t, p))
                if len(acks) < count:
                    break
                firsts.append(acks[0])
            else:
                return max(firsts) - t
            if time.monotonic() > deadline:
                counts = {p: len(self.acks_since(t, p)) for p in parts}
                errs = {}
                for s in self.snapshot():
                    if s.error and s.acked and s.acked >= t:
                        errs[s.error] = errs.get(s.error, 0) + 1
                raise AssertionError(f"{self.writer}: no acks on some of partitions {parts} within {timeout}s "
                                     f"(acks per partition since: {counts}; errors since: {errs}; "
                                     f"fatal: {self.fatal})")
            time.sleep(0.02)

    # --- after the run -----------------------------------------------------------------

    def verify(self, bootstrap: str | None = None, topic: str | None = None, timeout: float = 60.0) -> Report:
        log = read_log(bootstrap or self.bootstrap, topic or self.topic, self.partitions, timeout)
        return analyze(self.snapshot(), log, self.start_time, self.stop_time, prefix=f"{self.writer}-")


# --- self-test (no broker) -------------------------------------------------------------------

def test_checker_reports_what_it_should():
    t = 100.0
    sends = [Send(f"w0-{i}", i % 2, i, t + i * 0.1, t + i * 0.1 + 0.01, offset=1 + i // 2) for i in range(10)]
    # partition 0 gets w0-0,2,4,6,8 at 1..5; partition 1 gets w0-1,3,5,7,9 at 1..5
    sends.append(Send("w0-10", 0, 10, t + 1.0, t + 1.5, error="_MSG_TIMED_OUT"))
    sends[9].acked = t + 4.0  # a 3-second stall on partition 1
    log = {
        0: [(0, "control"), (1, "w0-0"), (2, "w0-2"), (3, "w0-6"), (4, "w0-4"), (5, "w0-8"), (6, "w0-8"),
            (7, "w0-10"), (8, "other-1")],  # 6 and 4 swapped (moved + reordered), 8 twice
        1: [(0, "control"), (1, "w0-1"), (2, "w0-3"), (3, "w0-5"), (5, "w0-9")],  # w0-7 lost
    }
    r = analyze(sends, log, start=t, end=t + 4.0, prefix="w0-")
    assert [s.value for s in r.lost] == ["w0-7"], r.summary()
    assert sorted(s.value for s, _ in r.moved) == ["w0-4", "w0-6"], r.summary()
    assert r.duplicated == [("w0-8", [(0, 5), (0, 6)])], r.summary()
    assert r.reordered == [(0, ("w0-4", 4), ("w0-6", 3))], r.summary()
    assert r.acked == 10 and r.failed == 1 and r.unacked_present == 1 and r.errors == {"_MSG_TIMED_OUT": 1}
    assert r.log_records == 11, r.summary()  # "control" and "other-1" are not ours
    assert r.stall_partition == 1 and abs(r.stall - (4.0 - 0.71)) < 1e-6, r.summary()
    assert not r.clean

    clean = analyze(sends[:6], {0: [(1, "w0-0"), (2, "w0-2"), (3, "w0-4")], 1: [(1, "w0-1"), (2, "w0-3"),
                                                                              (3, "w0-5")]}, start=t, prefix="w0-")
    assert clean.clean and clean.acked == 6, clean.summary()
