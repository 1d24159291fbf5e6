"""Disks that fail, fill up or are wiped, with real processes and real faults.

- a replica whose node comes back with an empty data directory must catch up before
  its answer counts toward a read quorum: wiped follower, leader killed at once;
- a full disk (a size-limited tmpfs: real ENOSPC) answers produce with the retriable
  KAFKA_STORAGE_ERROR, takes the partition offline on that node, moves its leadership
  and never crashes the process;
- a failing fsync (EIO, from an LD_PRELOAD shim on fsync/fdatasync, `faults/`) does the
  same, and the partition returns after a restart with a working disk.

Every scenario runs a Checker (acks=all, idempotent) and rereads the log: nothing
acknowledged may be lost. DLog-only (cluster flags, data directories, metrics)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from checker import Checker, read_log
from conftest import Broker
from test_cluster import wait_for
from test_replication import bootstraps, create, partitions_of, start_nodes, stop_cluster, wait_formed

pytestmark = pytest.mark.dlog_only

FAULTS = Path(__file__).resolve().parent / "faults"


def mount_tmpfs(path: Path, size: str) -> bool:
    """Mounts a tmpfs of `size` at `path` (a real disk that fills up); False where this
    machine does not let the test mount."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def umount(path: Path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def eio_shim(tmp_path: Path) -> Path:
    """Builds the fsync/fdatasync EIO shim with the machine's C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the fault shim")
    out = tmp_path / "eio_fsync.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(FAULTS / "eio_fsync.c"), "-ldl"], check=True)
    return out


def leader_of(nodes, topic: str, not_on=()) -> int | None:
    for i, n in nodes.items():
        if n.proc.poll() is not None:
            continue
        try:
            leader = partitions_of(n.bootstrap, topic)[0][0]
        except Exception:  # noqa: BLE001 - a node still starting
            continue
        if leader >= 0 and leader not in not_on:
            return leader
    return None


def produce_one(bootstrap: str, topic: str, value: bytes, timeout: float = 15) -> str:
    """One acks=all record: 'ok@offset' or the error's name."""
    from confluent_kafka import Producer
    got = []
    p = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4", "acks": "all",
                  "message.timeout.ms": int(timeout * 1000), "enable.idempotence": False, "retries": 0})
    p.produce(topic, value=value, partition=0,
              on_delivery=lambda err, msg: got.append(err.name() if err else f"ok@{msg.offset()}"))
    p.flush(timeout + 5)
    return got[0] if got else "no delivery report"


def restart_until_in_sync(nodes, node: int, topic: str):
    """Restarts `node` (its disk working again) and waits until its replica of `topic`
    is back in the in-sync set: the offline partition returned."""
    nodes[node].stop()
    nodes[node].start()
    wait_for(lambda: sorted(partitions_of(bootstraps(nodes), topic)[0][2]) == sorted(nodes), 30,
             f"node {node} back in sync after a restart", 0.2)


def log_text(node) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(node.workdir.glob(f"node{node.id}.*.log")))


# --- a. a wiped data directory ------------------------------------------------------------

def test_a_wiped_follower_counts_only_once_caught_up_and_nothing_acknowledged_is_lost(tmp_path):
    """RF 3, W 2, R 2. Records are acknowledged by the leader a and follower b while the
    third replica c is paused. b is killed, its data directory deleted, and it starts
    again (empty); a is killed at once, then c resumes. Only a's disk holds those
    records now: b's empty answer must not make a read quorum with c (c would open an
    epoch without them and a would truncate them on its return). The partition waits
    for a instead, and b counts again once caught up."""
    nodes = start_nodes(tmp_path, 3)
    try:
        a = wait_formed(nodes, 3)  # the controller: b restarts while a and b are the majority
        b, c = [i for i in nodes if i != a]
        create(nodes[a].bootstrap, "wiped", assignment=[[a, b, c]], write_quorum=2, read_quorum=2)
        # b's only copy of this one goes with its disk: it must start over empty, not
        # wait for ever for a replica that could hold it.
        create(nodes[a].bootstrap, "alone", assignment=[[b]])
        assert produce_one(nodes[a].bootstrap, "alone", b"gone with the disk").startswith("ok@")
        chk = Checker(bootstraps(nodes), "wiped", 1, writer="wp", rate=300).start()
        chk.wait_acks_after(time.monotonic(), 30, count=50)

        nodes[c].proc.send_signal(signal.SIGSTOP)
        t_paused = time.monotonic()
        chk.wait_acks_after(t_paused + 0.3, 15, count=100)  # held by a and b only
        only_ab = len(chk.acks_since(t_paused + 0.3))
        nodes[b].kill()
        shutil.rmtree(nodes[b].workdir / f"data{b}")
        nodes[b].start()
        nodes[a].kill()
        t_kill = time.monotonic()
        nodes[c].proc.send_signal(signal.SIGCONT)

        # b and c alone must not open a new epoch: b lacks what it acknowledged.
        time.sleep(6)  # the window in which b and c would (wrongly) elect and write
        opened = chk.first_ack_after(t_kill + 0.5)
        assert "lost its data" in log_text(nodes[b]), log_text(nodes[b])[-3000:]

        nodes[a].start()
        resumed = chk.wait_acks_after(time.monotonic(), 60, count=20)
        assert produce_one(bootstraps(nodes), "alone", b"after").startswith("ok@"), "the lone copy starts over"
        wait_for(lambda: b in partitions_of(bootstraps(nodes), "wiped")[0][2], 30,
                 f"the wiped replica {b} back in sync", 0.2)
        wait_for(lambda: "caught up" in log_text(nodes[b]), 30, "the wiped replica to say it caught up", 0.2)
        chk.stop()
        report = chk.verify(bootstraps(nodes))
        print(f"\n[wiped] {only_ab} records acknowledged by a and b alone; writes acknowledged without a: "
              f"{'none' if opened is None else 'some'}; resumed {resumed:.2f}s after a returned; "
              f"{report.summary()}")
        assert only_ab > 0
        assert opened is None, "b (empty) and c (behind) opened an epoch without the records only a holds"
        assert report.clean, report.summary()
    finally:
        for n in nodes.values():
            if n.proc.poll() is None:
                n.proc.send_signal(signal.SIGCONT)
        stop_cluster(nodes)


# --- b. a full disk --------------------------------------------------------------------------

def metric(broker: Broker, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{broker.metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_a_full_disk_answers_kafka_storage_error_and_the_node_lives_on(tmp_path):
    """A single node on an 8 MiB tmpfs: writes fill it, the produce that hits ENOSPC is
    answered with KAFKA_STORAGE_ERROR (retriable), the process keeps running and
    answering Metadata, and the error is counted. With room again and a restart, every
    acknowledged record is there and writes are accepted again."""
    from confluent_kafka.admin import AdminClient
    workdir = tmp_path / "full"
    workdir.mkdir()
    broker = Broker("dlog", workdir)
    if not mount_tmpfs(broker.data_dir, "8m"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        broker.start()
        acked, errors = fill(broker.bootstrap, "fills", 4000, 4096)  # 16 MiB: twice the disk
        assert errors, f"{len(acked)} records acknowledged and no error on a full disk"
        assert set(errors) == {"KAFKA_STORAGE_ERROR"}, errors[:5]
        assert broker.alive(), broker.log_tail()
        assert metric(broker, "dlog_partition_disk_errors_total") >= 1
        md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
        assert "fills" in md.topics
        assert broker.alive(), broker.log_tail()

        subprocess.run(["mount", "-o", "remount,size=64m", str(broker.data_dir)], check=True)
        broker.stop()
        broker.start()
        held = {o for o, _ in read_log(broker.bootstrap, "fills", 1)[0]}
        assert all(o in held for o in acked), f"{len(set(acked) - held)} acknowledged records are gone"
        assert produce_one(broker.bootstrap, "fills", b"room again").startswith("ok@")
        print(f"\n[full disk] {len(acked)} records acknowledged before the disk filled; then {errors[0]}")
    finally:
        if broker.alive():
            broker.kill()
        umount(broker.data_dir)


def fill(bootstrap: str, topic: str, count: int, size: int) -> tuple[list[int], list[str]]:
    """Writes `count` records of `size` bytes to partition 0 (acks=all, no retries),
    stopping at the first error: (offsets acknowledged, errors)."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4", "acks": "all", "linger.ms": 5,
                  "message.timeout.ms": 20000, "enable.idempotence": False, "retries": 0})
    acked, errors = [], []
    value = b"x" * size
    for _ in range(count):
        try:
            p.produce(topic, value=value, partition=0,
                      on_delivery=lambda err, msg: (errors if err else acked).append(err.name() if err else msg.offset()))
        except BufferError:
            p.poll(0.05)
        p.poll(0)
        if errors:
            break
    p.flush(30)
    return acked, errors


def test_a_full_disk_on_one_replica_moves_its_leadership_and_loses_nothing(tmp_path):
    """The partition directory of one node is a 4 MiB tmpfs. It leads the partition;
    writes fill its disk: the partition goes offline there, another replica leads
    within seconds and keeps acknowledging, nothing acknowledged is lost, and the node
    goes on leading its other partitions. With room again and a restart, it rejoins."""
    nodes = start_nodes(tmp_path, 3)
    small = nodes[2].workdir / "data2" / "filling-0"
    mounted = False
    try:
        wait_formed(nodes, 3)
        if not mount_tmpfs(small, "4m"):
            pytest.skip("cannot mount a tmpfs here")
        mounted = True
        create(nodes[1].bootstrap, "filling", assignment=[[2, 1, 3]], write_quorum=2, read_quorum=2,
               segment_bytes=1 << 20)
        create(nodes[1].bootstrap, "beside", assignment=[[2, 1, 3]], write_quorum=2, read_quorum=2)
        chk = Checker(bootstraps(nodes), "filling", 1, writer="fl", rate=200).start()
        t0 = time.monotonic()
        filler = threading.Thread(target=fill, args=(bootstraps(nodes), "filling", 1000, 8192), daemon=True)
        filler.start()
        moved = wait_for(lambda: leader_of(nodes, "filling", not_on=(2,)), 60, "leadership to leave node 2", 0.1)
        t_moved = time.monotonic() - t0
        chk.wait_acks_after(time.monotonic(), 30, count=50)
        assert nodes[2].proc.poll() is None, "the node with the full disk died"
        assert "goes offline" in log_text(nodes[2])
        assert produce_one(bootstraps(nodes), "beside", b"still led by 2").startswith("ok@")
        assert partitions_of(bootstraps(nodes), "beside")[0][0] == 2
        filler.join(60)
        chk.stop()
        report = chk.verify(bootstraps(nodes, [1, 3]))
        assert report.clean, report.summary()

        # Room again, and a restart: the replica reopens, catches up and is in sync.
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        restart_until_in_sync(nodes, 2, "filling")
        print(f"\n[full replica disk] leadership moved to {moved} {t_moved:.2f}s after writes began; "
              f"{report.summary()}")
    finally:
        stop_cluster(nodes)
        if mounted:
            umount(small)


# --- c. a failing fsync (EIO) -----------------------------------------------------------------

def test_a_failing_fsync_takes_the_partition_offline_and_leadership_moves_within_2s(tmp_path):
    """Node 2 runs under a shim that fails fsync and fdatasync with EIO for one
    partition's files once armed. It leads that partition (flushed every 100 ms): the
    failed fsync takes the partition offline on node 2 (fsyncgate: nothing it wrote is
    reported durable after), another replica leads within 2 s, nothing acknowledged is
    lost, node 2 keeps leading its other partition, and after a restart without the
    fault its replica is in sync again."""
    shim = eio_shim(tmp_path)
    trigger = tmp_path / "eio-armed"
    nodes = start_nodes(tmp_path, 3)
    try:
        wait_formed(nodes, 3)
        nodes[2].stop()
        nodes[2].env = {"LD_PRELOAD": str(shim), "DLOG_FAULT_TRIGGER": str(trigger), "DLOG_FAULT_MATCH": "/failing-0/"}
        nodes[2].start()
        wait_formed(nodes, 3)
        create(nodes[1].bootstrap, "failing", assignment=[[2, 1, 3]], write_quorum=2, read_quorum=2, flush_ms=100)
        create(nodes[1].bootstrap, "steady", assignment=[[2, 1, 3]], write_quorum=2, read_quorum=2)
        chk = Checker(bootstraps(nodes), "failing", 1, writer="eio", rate=200).start()
        chk.wait_acks_after(time.monotonic(), 30, count=50)

        trigger.touch()
        t_fault = time.monotonic()
        moved = wait_for(lambda: leader_of(nodes, "failing", not_on=(2,)), 10, "leadership to leave node 2", 0.05)
        t_moved = time.monotonic() - t_fault
        resumed = chk.wait_acks_after(time.monotonic(), 30, count=50)
        assert nodes[2].proc.poll() is None, "the node whose fsync failed died"
        assert "goes offline" in log_text(nodes[2])
        assert produce_one(bootstraps(nodes), "steady", b"still led by 2").startswith("ok@")
        assert partitions_of(bootstraps(nodes), "steady")[0][0] == 2
        chk.stop()
        report = chk.verify(bootstraps(nodes, [1, 3]))

        trigger.unlink()
        nodes[2].env = {}
        restart_until_in_sync(nodes, 2, "failing")
        print(f"\n[eio] leadership moved to {moved} {t_moved:.2f}s after the fault (flush every 100 ms); "
              f"writes acknowledged {resumed:.2f}s after; {report.summary()}")
        assert t_moved < 2.0, f"leadership moved {t_moved:.2f}s after the fault"
        assert report.clean, report.summary()
    finally:
        stop_cluster(nodes)
