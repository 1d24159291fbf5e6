"""The six-client compatibility matrix: one scenario, every client family.

The drivers (tests/clients/*) do only what they are told and report what their client
reported, one JSON line per event; everything judged is judged here, the same way for
every client and for both brokers. tests/clients/README.md is the driver contract and
describes the scenario.
"""

from __future__ import annotations

import bisect
import datetime
import json
import os
import subprocess
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPAT_DOC = REPO / "docs" / "COMPATIBILITY.md"

# driver name -> (family directory, compression it produces with)
CLIENTS = {
    "java": ("java", "zstd"),
    "librdkafka": ("python", "lz4"),
    "kafka-python": ("python", "gzip"),
    "franz-go": ("go", "zstd"),
    "sarama": ("go", "snappy"),
    "kafkajs": ("js", "gzip"),
}

# Clients whose producer acknowledges on the leader's write alone by default (acks=1):
# with replication, a leader that dies before its followers copied a record loses it,
# as Kafka does. Java, librdkafka, franz-go and kafkajs default to acks=all.
LEADER_ONLY_ACKS = {"sarama", "kafka-python"}

STEPS = [
    ("create", "admin: create and describe a 6-partition topic"),
    ("configs", "admin: describe topic configs"),
    ("produce", "produce 50k keyed, compressed records"),
    ("join", "group of 3 shares the 6 partitions"),
    ("leave_rejoin", "a member leaves and rejoins mid-stream"),
    ("restart", "broker SIGKILL and restart mid-stream"),
    ("no_loss", "every acknowledged record consumed"),
    ("key_order", "per-key order"),
    ("resume", "committed offsets resume exactly"),
    ("no_dup", "no duplicates (idempotent producer)"),
    ("groups", "admin: list and describe groups"),
    ("delete", "admin: delete topic"),
]

RECORDS = int(os.environ.get("DLOG_MATRIX_RECORDS", "50000"))
KEYS = 64
PARTITIONS = 6
RATE = int(os.environ.get("DLOG_MATRIX_RATE", "2000"))  # records/s: production lasts ~25 s
REBALANCE_TIMEOUT = 60.0


class StepFailed(Exception):
    pass


@dataclass
class Event:
    t: float  # monotonic receive time in the harness
    data: dict

    @property
    def kind(self) -> str:
        return self.data.get("event", "")


class Driver:
    """One driver process; its stdout is parsed into events by a reader thread."""

    def __init__(self, launcher: Path, args: list[str], name: str, log_dir: Path):
        self.name = name
        self.events: list[Event] = []
        self.bad_lines: list[str] = []
        self.cond = threading.Condition()
        self.stderr_path = log_dir / f"{name}.stderr"
        self.stdout_path = log_dir / f"{name}.stdout"
        self.argv = [str(launcher), *args]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, cwd=log_dir)
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read(self):
        with open(self.stdout_path, "w") as copy:
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").strip()
                copy.write(line + "\n")
                if not line:
                    continue
                try:
                    data = json.loads(line)
                    ev = Event(time.monotonic(), data)
                except ValueError:
                    self.bad_lines.append(line)
                    continue
                with self.cond:
                    self.events.append(ev)
                    self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def of(self, kind: str) -> list[Event]:
        with self.cond:
            return [e for e in self.events if e.kind == kind]

    def wait_until(self, pred, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StepFailed(f"{self.name}: timed out after {timeout:.0f}s waiting for {what}"
                                     f"{self.failure_hint()}")
                if self.proc.poll() is not None and not self._reader.is_alive() and not pred():
                    raise StepFailed(f"{self.name}: exited ({self.proc.returncode}) before {what}"
                                     f"{self.failure_hint()}")
                self.cond.wait(min(left, 0.2))

    def failure_hint(self) -> str:
        errs = [e.data.get("msg") for e in self.events if e.kind == "error"]
        tail = ""
        try:
            tail = "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            pass
        return (f"; errors: {errs}" if errs else "") + (f"\n--- {self.name} stderr (tail) ---\n{tail}" if tail else "")

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def finish(self, timeout: float) -> int:
        """Waits for exit (killing it after `timeout`) and for the reader to drain stdout."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise StepFailed(f"{self.name}: did not exit within {timeout:.0f}s{self.failure_hint()}")
        self._reader.join(10)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_command(launcher: Path, args: list[str], name: str, log_dir: Path, timeout: float = 120) -> Driver:
    d = Driver(launcher, args, name, log_dir)
    d.close_stdin()
    rc = d.finish(timeout)
    if rc != 0:
        raise StepFailed(f"{name}: exit {rc}{d.failure_hint()}")
    return d


@dataclass
class Member:
    driver: Driver
    owned: set[int] = field(default_factory=set)

    def replay(self) -> set[int]:
        """The member's current assignment, from its assigned/revoked events."""
        owned: set[int] = set()
        for e in self.driver.events:
            if e.kind == "assigned":
                owned |= set(e.data["partitions"])
            elif e.kind == "revoked":
                owned -= set(e.data["partitions"])
        return owned


class Scenario:
    """Runs the scenario for one client against one broker and records each step."""

    def __init__(self, client: str, broker, launchers: Path, log_dir: Path, *, records: int = RECORDS,
                 rate: int = RATE, replication_factor: int | None = None):
        """`broker` has `bootstrap` (one address or a comma-separated list), `kill()` and
        `start()`; `replication_factor` None leaves it to the driver's default (1)."""
        self.client = client
        self.broker = broker
        self.records = records
        self.rate = rate
        self.replication_factor = replication_factor
        self.launcher = launchers / client
        self.compression = CLIENTS[client][1]
        self.log_dir = log_dir
        self.results: dict[str, tuple[str, str]] = {}
        suffix = os.urandom(3).hex()
        self.topic = f"matrix-{client}-{suffix}"
        self.group = f"matrix-{client}-{suffix}"
        self.members: list[Member] = []
        self.all_members: list[Member] = []
        self.producer: Driver | None = None
        self._log_cache: dict[int, list[int]] = {}

    # --- bookkeeping ----------------------------------------------------------------------
    def passed(self, step: str, detail: str = ""):
        self.results[step] = ("pass", detail)

    def failed(self, step: str, detail: str):
        self.results[step] = ("FAIL", detail)

    def na(self, step: str, detail: str):
        self.results[step] = ("n/a", detail)

    def step(self, name: str, fn):
        try:
            detail = fn()
            if name not in self.results:
                self.passed(name, detail or "")
            return True
        except StepFailed as e:
            self.failed(name, str(e))
            return False

    def cmd(self, *args: str, name: str, timeout: float = 120) -> Driver:
        return run_command(self.launcher, [args[0], "--bootstrap", self.broker.bootstrap, *args[1:]],
                           name, self.log_dir, timeout)

    # --- the scenario ---------------------------------------------------------------------
    def run(self):
        try:
            self._run()
        finally:
            for m in self.all_members:
                m.driver.kill()
            if self.producer:
                self.producer.kill()
        for key, _ in STEPS:
            self.results.setdefault(key, ("skip", "not reached"))

    def _run(self):
        if not self.step("create", self._create):
            return
        for i in range(3):
            self._start_member(f"m{i}")
        if not self.step("join", lambda: self._wait_shared(self.members, "the first assignment")):
            return
        self.producer = Driver(self.launcher, [
            "produce", "--bootstrap", self.broker.bootstrap, "--topic", self.topic, "--count", str(self.records),
            "--keys", str(KEYS), "--compression", self.compression, "--rate", str(self.rate)],
            "producer", self.log_dir)
        self.producer.close_stdin()
        self.step("leave_rejoin", self._leave_rejoin)
        self.step("restart", self._restart)
        if not self.step("produce", self._produce_done):
            return
        if not self.step("no_loss", self._wait_all_consumed):
            return
        self._wait_final_commits()
        self.step("groups", self._groups)
        self._close_members()
        self._verify()
        self.step("delete", lambda: self.cmd("admin-delete", "--topic", self.topic, name="admin-delete") and "")

    def _create(self):
        rf = [] if self.replication_factor is None else ["--replication-factor", str(self.replication_factor)]
        d = self.cmd("admin-create", "--topic", self.topic, "--partitions", str(PARTITIONS), *rf, name="admin-create")
        topic = d.of("topic")
        if not topic or topic[-1].data.get("partitions") != PARTITIONS:
            raise StepFailed(f"describe saw {topic[-1].data if topic else 'no topic event'}")
        topics = d.of("topics")
        if not topics or self.topic not in topics[-1].data.get("topics", []):
            raise StepFailed("the new topic is missing from list topics")
        configs = (d.of("configs") or [Event(0, {})])[-1].data.get("configs", {})
        want = {"cleanup.policy": "delete", "retention.ms": "604800000"}
        bad = {k: configs.get(k) for k, v in want.items() if configs.get(k) != v}
        if bad:
            self.failed("configs", f"expected {want}, got {bad} (of {len(configs)} configs)")
        else:
            self.passed("configs", f"{len(configs)} configs")
        return f"{PARTITIONS} partitions"

    def _start_member(self, name: str) -> Member:
        d = Driver(self.launcher, ["consume", "--bootstrap", self.broker.bootstrap, "--topic", self.topic,
                                   "--group", self.group, "--name", name], name, self.log_dir)
        m = Member(d)
        self.members.append(m)
        self.all_members.append(m)
        return m

    def _wait_shared(self, members: list[Member], what: str, timeout: float = REBALANCE_TIMEOUT) -> str:
        """Waits until `members` hold all partitions between them, each at least one, disjoint."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            owned = [m.replay() for m in members]
            union = set().union(*owned)
            if (union == set(range(PARTITIONS)) and all(owned)
                    and sum(len(o) for o in owned) == PARTITIONS):
                return f"{what} in {time.monotonic() - t0:.1f}s"
            for m in members:
                if m.driver.proc.poll() is not None:
                    raise StepFailed(f"{m.driver.name} exited ({m.driver.proc.returncode}) while waiting for "
                                     f"{what}{m.driver.failure_hint()}")
            if time.monotonic() > deadline:
                raise StepFailed(f"no full assignment for {what} within {timeout:.0f}s: "
                                 f"{ {m.driver.name: sorted(o) for m, o in zip(members, owned)} }")
            time.sleep(0.1)

    def _acked(self) -> int:
        return len(self.producer.of("ack"))

    def _wait_acked(self, fraction: float):
        n = int(self.records * fraction)
        self.producer.wait_until(lambda: len([e for e in self.producer.events if e.kind in ("ack", "fail")]) >= n
                                 or any(e.kind == "done" for e in self.producer.events),
                                 timeout=180, what=f"{n} acknowledgements")

    def _leave_rejoin(self):
        self._wait_acked(0.2)
        leaver = self.members[1]
        leaver.driver.close_stdin()
        rc = leaver.driver.finish(60)
        if rc != 0 or not leaver.driver.of("closed"):
            raise StepFailed(f"the leaving member exited {rc} without closing{leaver.driver.failure_hint()}")
        self.members.remove(leaver)
        after_leave = self._wait_shared(self.members, "the 2 remaining members")
        self._wait_acked(0.4)
        self._start_member("m1-rejoined")
        after_rejoin = self._wait_shared(self.members, "the rejoined group of 3")
        return f"{after_leave}; {after_rejoin}"

    def _restart(self):
        self._wait_acked(0.6)
        if self.producer.of("done"):
            raise StepFailed("the producer had finished before the broker was killed: not mid-stream")
        at = self._acked()
        t0 = time.monotonic()
        self.broker.kill()
        self.broker.start()
        up = time.monotonic() - t0
        n = len(self._consumed_now())
        self.producer.wait_until(lambda: self._acked() > at + 100 or bool(self.producer.of("done")),
                                 timeout=120, what="acknowledgements after the restart")
        deadline = time.monotonic() + 120
        while len(self._consumed_now()) <= n + 100:
            if time.monotonic() > deadline:
                raise StepFailed("consumers made no progress within 120 s of the restart")
            time.sleep(0.1)
        return f"killed at {at} acks; broker back in {up:.1f}s; producer and consumers resumed"

    def _produce_done(self):
        self.producer.wait_until(lambda: bool(self.producer.of("done")) or bool(self.producer.of("error")),
                                 timeout=300, what="the producer to finish")
        rc = self.producer.finish(30)
        done = self.producer.of("done")
        if rc != 0 or not done:
            raise StepFailed(f"producer exit {rc}{self.producer.failure_hint()}")
        d = done[-1].data
        if d["acked"] + d["failed"] != self.records:
            raise StepFailed(f"producer reported {d['acked']} acked + {d['failed']} failed of {self.records}")
        if d["acked"] != len(self.producer.of("ack")):
            raise StepFailed(f"done says {d['acked']} acked but {len(self.producer.of('ack'))} ack lines")
        if d["acked"] < self.records * 0.9:
            raise StepFailed(f"only {d['acked']} of {self.records} acknowledged")
        return f"{d['acked']} acked, {d['failed']} failed, {self.compression}, idempotent={d['idempotent']}"

    def _consumed_now(self) -> dict[tuple[int, int], tuple[str, str]]:
        out = {}
        for m in self.all_members:
            for e in m.driver.of("rec"):
                out[(e.data["p"], e.data["o"])] = (e.data["k"], e.data["v"])
        return out

    def _wait_all_consumed(self):
        acks = {(e.data["p"], e.data["o"]) for e in self.producer.of("ack")}
        # acks=1 with replication: a record the log no longer holds may be lost (below)
        leader_only = self.client in LEADER_ONLY_ACKS and (self.replication_factor or 1) > 1
        deadline = time.monotonic() + (60 if leader_only else 180)
        lost: set[tuple[int, int]] = set()
        while True:
            missing = acks - self._consumed_now().keys()
            if not missing:
                break
            if time.monotonic() > deadline:
                if leader_only:
                    # lost only if the log holds no record there; one it holds but no
                    # consumer delivered is a consumer-side skip: still a failure
                    held = {(p, o) for p in {p for p, _ in missing} for o in self._log_offsets(p)}
                    lost = {m for m in missing if m not in held}
                    if lost == missing:
                        break
                raise StepFailed(f"{len(missing)} acknowledged records never consumed, e.g. {sorted(missing)[:5]}")
            time.sleep(0.2)
        wrong = []
        consumed = self._consumed_now()
        for e in self.producer.of("ack"):
            if (e.data["p"], e.data["o"]) in lost:
                continue
            i = e.data["i"]
            got = consumed[(e.data["p"], e.data["o"])]
            if got != (f"k{i % KEYS}", str(i)):
                wrong.append((i, e.data["p"], e.data["o"], got))
        if wrong:
            raise StepFailed(f"{len(wrong)} acked offsets hold another record, e.g. {wrong[:3]}")
        if lost:
            self.na("no_loss", f"the client acknowledges on the leader alone (acks=1 by default): {len(lost)} "
                               f"records acknowledged by a leader that then failed are not in the log, which "
                               f"acks=1 allows, e.g. {sorted(lost)[:3]}; the other {len(acks) - len(lost)} consumed")
        return f"{len(acks)} records"

    def _commits(self):
        """[(t, partition, offset, ok)] over every member, in receive order."""
        out = []
        for m in self.all_members:
            for e in m.driver.events:
                if e.kind in ("commit_try", "commit_ok"):
                    for p, o in e.data["offsets"].items():
                        out.append((e.t, int(p), o, e.kind == "commit_ok"))
        return sorted(out)

    def _log_end(self) -> dict[int, int]:
        ends = defaultdict(int)
        for p, o in self._consumed_now():
            ends[p] = max(ends[p], o + 1)
        return ends

    def _wait_final_commits(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ends = self._log_end()
            best = defaultdict(int)
            for _, p, o, ok in self._commits():
                if ok:
                    best[p] = max(best[p], o)
            if all(best[p] >= ends[p] for p in ends):
                return
            time.sleep(0.2)

    def _groups(self):
        d = self.cmd("admin-groups", "--group", self.group, name="admin-groups")
        groups = (d.of("groups") or [Event(0, {})])[-1].data.get("groups", [])
        if self.group not in groups:
            raise StepFailed(f"group missing from list groups: {groups}")
        g = (d.of("group") or [Event(0, {})])[-1].data
        if g.get("state") != "Stable" or len(g.get("members", [])) != 3:
            raise StepFailed(f"describe group: state {g.get('state')}, {len(g.get('members', []))} members "
                             "(expected Stable, 3)")
        parts = [p for m in g["members"] if "partitions" in m for p in m["partitions"]]
        if all("partitions" in m for m in g["members"]) and sorted(parts) != list(range(PARTITIONS)):
            raise StepFailed(f"member assignments {[m['partitions'] for m in g['members']]} do not cover "
                             f"{PARTITIONS} partitions once")
        return "Stable, 3 members"

    def _close_members(self):
        for m in self.members:
            m.driver.close_stdin()
        for m in self.members:
            try:
                rc = m.driver.finish(90)
                if rc != 0 or not m.driver.of("closed"):
                    self.failed("groups", f"{m.driver.name} exited {rc} at close{m.driver.failure_hint()}")
            except StepFailed as e:
                self.failed("groups", str(e))

    # --- the checks after the run ---------------------------------------------------------
    def _verify(self):
        consumed = self._consumed_now()
        idempotent = bool(self.producer.of("done")[-1].data["idempotent"])
        self.step("key_order", lambda: self._check_key_order(consumed, idempotent))
        self.step("resume", lambda: self._check_resume(consumed))
        if idempotent:
            self.step("no_dup", lambda: self._check_no_dup(consumed))
        else:
            try:
                detail = self._check_no_dup(consumed)
                self.na("no_dup", f"client default is not idempotent ({detail})")
            except StepFailed as e:
                self.na("no_dup", f"client default is not idempotent; {e}")

    def _check_key_order(self, consumed, idempotent: bool):
        # 1. each member sees every partition in offset order (between reassignments)
        for m in self.all_members:
            last: dict[int, int] = {}
            for e in m.driver.events:
                if e.kind == "assigned":
                    for p in e.data["partitions"]:
                        last.pop(p, None)
                elif e.kind == "rec":
                    p, o = e.data["p"], e.data["o"]
                    if p in last and o <= last[p]:
                        raise StepFailed(f"{m.driver.name} got partition {p} offset {o} after {last[p]}")
                    last[p] = o
        # 2. a key lives in one partition, and its records sit in the order produced
        where: dict[str, int] = {}
        last_i: dict[str, int] = {}
        reordered = 0
        for (p, o), (k, v) in sorted(consumed.items()):
            if where.setdefault(k, p) != p:
                raise StepFailed(f"key {k} is in partitions {where[k]} and {p}")
            i = int(v)
            if k in last_i and i <= last_i[k]:
                reordered += 1
            last_i[k] = max(i, last_i.get(k, -1))
        if reordered and idempotent:
            raise StepFailed(f"{reordered} records of a key sit before an earlier-produced one")
        if reordered:
            return f"consumers in order; {reordered} records reordered by non-idempotent retries"
        return f"{len(where)} keys in order"

    def _check_resume(self, consumed):
        commits = self._commits()
        # every time a partition is handed to a member, its first record must be at the
        # group's committed offset: one that was committed (tried), not below the last that
        # was confirmed before the hand-over, or 0 when nothing was committed yet. "At" an
        # offset c: the record at c, or the first after c where the offsets between hold no
        # record (a replicated DLog topic opens each leader epoch with a control batch,
        # invisible to consumers); that the log holds no record there is read from the log
        # itself, only then
        held = defaultdict(list)  # partition -> offsets consumed, ascending
        for p, o in sorted(consumed):
            held[p].append(o)
        handovers = 0
        for m in self.all_members:
            pending: dict[int, float] = {}
            for e in m.driver.events:
                if e.kind == "assigned":
                    for p in e.data["partitions"]:
                        pending[p] = e.t
                elif e.kind == "rec" and e.data["p"] in pending:
                    p, o = e.data["p"], e.data["o"]
                    t_assigned = pending.pop(p)
                    tried = {c[2] for c in commits if c[1] == p and c[0] <= e.t}
                    confirmed = [c[2] for c in commits if c[1] == p and c[3] and c[0] <= t_assigned]
                    floor = max(confirmed, default=0)
                    i = bisect.bisect_left(held[p], o)
                    prev = held[p][i - 1] if i > 0 else -1  # the consumed record before o
                    at = o in tried or o == 0
                    if not at and o >= floor and any(prev < c < o for c in tried | {0}):
                        log = self._log_offsets(p)  # which of the offsets before o hold a record?
                        j = bisect.bisect_left(log, o)
                        prev = log[j - 1] if j > 0 else -1
                        at = any(prev < c < o for c in tried | {0})
                    if o < floor or not at:
                        raise StepFailed(f"{m.driver.name} resumed partition {p} at {o} (the record before: "
                                         f"{prev}); committed before: confirmed up to {floor}, "
                                         f"tried {sorted(tried)[-5:]}")
                    handovers += 1
        # the group's final committed offsets are the log end
        ends = self._log_end()
        best = defaultdict(int)
        for _, p, o, ok in commits:
            if ok:
                best[p] = max(best[p], o)
        short = {p: (best[p], e) for p, e in ends.items() if best[p] != e}
        if short:
            raise StepFailed(f"final commits differ from the log end (committed, end): {short}")
        return f"{handovers} hand-overs resumed at the committed offset; final commits = log end"

    def _log_offsets(self, p: int) -> list[int]:
        """The offsets of partition p that hold a record, read from the log with a
        client of the harness's own (cached)."""
        if p in self._log_cache:
            return self._log_cache[p]
        from confluent_kafka import Consumer, TopicPartition  # the harness's venv has it
        c = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": f"{self.group}-reader",
                      "enable.auto.commit": False, "broker.address.family": "v4"})
        try:
            _, high = c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)
            c.assign([TopicPartition(self.topic, p, 0)])
            offsets: list[int] = []
            deadline = time.monotonic() + 60
            while (offsets[-1] if offsets else -1) < high - 1 and time.monotonic() < deadline:
                msgs = c.consume(1000, 1.0)
                offsets += [m.offset() for m in msgs if m.error() is None]
                if msgs and not offsets and all(m.error() for m in msgs):
                    raise StepFailed(f"reading partition {p}: {msgs[0].error()}")
                # the last offsets before the high watermark may be a control batch: stop
                # once the consumer's position passed them
                if c.position([TopicPartition(self.topic, p)])[0].offset >= high:
                    break
        finally:
            c.close()
        self._log_cache[p] = sorted(set(offsets))
        return self._log_cache[p]

    def _check_no_dup(self, consumed):
        seen: dict[str, tuple[int, int]] = {}
        dups = []
        for (p, o), (_, v) in sorted(consumed.items()):
            if v in seen:
                dups.append((v, seen[v], (p, o)))
            seen[v] = (p, o)
        if dups:
            raise StepFailed(f"{len(dups)} values written twice, e.g. {dups[:3]}")
        return f"{len(seen)} distinct values, none twice"


# --- the document ---------------------------------------------------------------------------

_DATA_MARK = "<!-- matrix-data "
CLUSTER_TARGET = "dlog-cluster"  # the results of test_matrix_cluster.py


def record_results(target: str, client_results: dict, **fields):
    """Merges one session's results of `target` into docs/COMPATIBILITY.md (the other
    targets' are kept) with today's date and `fields`, and prints its table."""
    results = load_results()
    entry = results.setdefault(target, {"clients": {}})
    entry.update(when=datetime.date.today().isoformat(), **fields)
    for client, steps in client_results.items():
        entry["clients"][client] = {k: list(v) for k, v in steps.items()}
    COMPAT_DOC.write_text(render(results) + hand_written())
    print("\n" + text_table(target, entry["clients"]))
    print(f"written to {COMPAT_DOC.relative_to(REPO)}")


def load_results() -> dict:
    try:
        text = COMPAT_DOC.read_text()
    except OSError:
        return {}
    for line in text.splitlines():
        if line.startswith(_DATA_MARK):
            try:
                return json.loads(line[len(_DATA_MARK):].rsplit("-->", 1)[0])
            except ValueError:
                return {}
    return {}


def hand_written() -> str:
    """What follows the data line in docs/COMPATIBILITY.md: the sections people write
    (differences written down as intended, the peer suites), kept as they are."""
    try:
        text = COMPAT_DOC.read_text()
    except OSError:
        return ""
    head, mark, tail = text.partition("\n" + _DATA_MARK)
    return tail.split("\n", 1)[1] if mark and "\n" in tail else ""


def render(results: dict) -> str:
    """The generated part of docs/COMPATIBILITY.md, up to and including its data line.
    results: {target: {"when": str, "clients": {client: {step: [status, detail]}}}}"""
    lines = [
        "# Client compatibility matrix",
        "",
        "Written by `tests/compat/test_matrix.py` (run by the test command; against Apache",
        "Kafka with `DLOG_TEST_TARGET=kafka`). Each client runs the scenario of",
        "`tests/clients/README.md` with its default settings: a 6-partition topic, 50,000 keyed",
        "compressed records, a group of 3 with a member leaving and rejoining, a broker SIGKILL",
        "and restart mid-stream, then the checks below. `pass`/`FAIL` per step; `n/a` where the",
        "client's defaults make the check meaningless (a non-idempotent producer may write a",
        "retried record twice, on Kafka too); `skip` where an earlier step failed. The sections",
        "after the results are written by hand and kept when the results are recorded again.",
        "",
    ]
    clients = list(CLIENTS)
    for target in ("dlog", "kafka", CLUSTER_TARGET):
        if target not in results:
            continue
        r = results[target]
        labels = dict(STEPS)
        if target == CLUSTER_TARGET:
            title = "DLog, 3 nodes, RF 3"
            records = r.get("records", RECORDS)
            labels["produce"] = labels["produce"].replace("50k", f"{records / 1000:g}k")
            labels["restart"] = "a partition leader's SIGKILL and restart mid-stream"
            intro = [f"Run {r.get('when', '?')}, written by `tests/compat/test_matrix_cluster.py`: the same",
                     "scenario against a 3-node DLog cluster. The drivers get all three nodes as",
                     "bootstrap and create the topic with replication factor 3 (every record batch",
                     "is replicated; each leader epoch starts with a LeaderChange control batch the",
                     f"clients must skip); {records:,} records at {r.get('rate', RATE):,}/s. The restart step",
                     "SIGKILLs one node that leads partitions of the topic (the group's coordinator",
                     "when it leads any) and restarts it; the other two keep serving."]
        else:
            title = "DLog" if target == "dlog" else "Apache Kafka " + r.get("version", "")
            intro = [f"Run {r.get('when', '?')}."]
        lines += [f"## {title.strip()}", "", *intro, ""]
        lines.append("| step | " + " | ".join(clients) + " |")
        lines.append("|---|" + "---|" * len(clients))
        for key, _ in STEPS:
            row = [r["clients"].get(c, {}).get(key, ["-", ""])[0] for c in clients]
            lines.append(f"| {labels[key]} | " + " | ".join(row) + " |")
        lines.append("")
        notes = []
        for c in clients:
            for key, _ in STEPS:
                label = labels[key]
                status, detail = r["clients"].get(c, {}).get(key, ["-", ""])
                if status in ("FAIL", "n/a") and detail:
                    notes.append(f"- {c}, {label}: {status}: {detail.splitlines()[0][:300]}")
        if notes:
            lines += ["Notes:", "", *notes, ""]
    lines.append(_DATA_MARK + json.dumps(results, sort_keys=True) + " -->")
    return "\n".join(lines) + "\n"


def text_table(target: str, clients: dict) -> str:
    names = [c for c in CLIENTS if c in clients]
    width = max(len(label) for _, label in STEPS)
    out = [f"compatibility matrix ({target})", " " * width + "  " + "  ".join(f"{c:>12}" for c in names)]
    for key, label in STEPS:
        out.append(f"{label:<{width}}  " + "  ".join(f"{clients[c].get(key, ['-'])[0]:>12}" for c in names))
    return "\n".join(out)
