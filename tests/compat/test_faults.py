"""More faults, with real processes (issue 12): a partition leader paused with SIGSTOP
long enough to be replaced, twenty quick kill -9 and restart cycles of whichever node
leads, and 20% packet loss on one node's link (network namespaces).

Each test runs `checker.Checker` (an acks=all idempotent producer recording every send
and its outcome) against a CP topic (RF 3, write.quorum 2, read.quorum 2) and rereads
the log at the end: no acknowledged record may be lost, moved, duplicated or reordered.
Measured numbers (election and failover times, epochs, acks, packets dropped) are
printed: run with -s to see them. DLog-only (cluster flags)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from checker import Checker, stalls
from test_cluster import Node, wait_for
from test_partition import NetCluster, net3  # noqa: F401 - fixture
from test_replication import (bootstraps, cluster3, create, describe_at, new_leader,  # noqa: F401 - fixture
                              produce_one_by_one, stopped, wait_formed)

pytestmark = pytest.mark.dlog_only


# --- helpers -----------------------------------------------------------------------------

def leadership(bootstrap: str, topic: str, node: int | None = None) -> dict[int, tuple[int, int, list[int]]]:
    """{partition: (leader, leader epoch, isr)} from one Metadata answer (v7+ carries
    the leader epoch), given by `node` when named, else by any node."""
    from kafka import KafkaAdminClient
    from kafka.protocol.metadata import MetadataRequest

    a = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        req = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=topic)],
                              allow_auto_topic_creation=False)

        async def send():
            return await a._manager.send(req, node_id=node)

        t = a._manager.run(send).to_dict()["topics"][0]
        assert t["error_code"] == 0, t
        return {p["partition_index"]: (p["leader_id"], p["leader_epoch"], sorted(p["isr_nodes"]))
                for p in t["partitions"]}
    finally:
        a.close()


def log_lines(paths: list[Path], needles: tuple[str, ...], last: int = 30) -> str:
    """The last `last` lines of the given node logs that contain one of `needles`."""
    out = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        out += [f"{path.name}: {line}" for line in text.splitlines() if any(n in line for n in needles)]
    return "\n    ".join(out[-last:])


def node_logs(node: Node) -> list[Path]:
    """Every log file of `node`, one per start, oldest first."""
    return sorted(node.workdir.glob(f"node{node.id}.*.log"), key=lambda p: int(p.name.split(".")[1]))


def all_logs(nodes: dict[int, Node]) -> list[Path]:
    return [p for n in nodes.values() for p in node_logs(n)]


REPLICATION_WORDS = ("lead", "seal", "epoch", "fenc", "step", "session", "registered", "recover", "truncat")


# --- a. a paused leader --------------------------------------------------------------------

PAUSE = 5.0  # seconds the leader stays stopped (the controller fences a broker after 3 missed pings)


def test_a_paused_leader_is_replaced_and_steps_down_without_acknowledging_stale_writes(cluster3):
    """A CP topic's leader is frozen (SIGSTOP) under acks=all load for 5 s. While it is
    stopped the others must elect a new leader and open its epoch (a fresh write is
    acknowledged); thawed, the old leader still holds the requests it received before
    the pause and its view of itself as leader, yet it may acknowledge nothing the new
    epoch does not hold (the final log holds every acknowledged record where it was
    acknowledged), every node's Metadata must name the new leader within a few seconds
    and the old leader must follow it and rejoin the in-sync replicas."""
    nodes = cluster3
    controller = wait_formed(nodes, 3)
    # the leader off the controller: pausing the controller too would stall the
    # metadata group (an election of its own first); here only the partition leader sleeps
    victim = next(i for i in nodes if i != controller)
    others = [i for i in nodes if i != victim]
    topic = "paused"
    ps = create(nodes[controller].bootstrap, topic, assignment=[[victim, *others]], write_quorum=2, read_quorum=2)
    assert ps[0][0] == victim, f"the first replica should lead: {ps}"
    _, old_epoch, _ = leadership(nodes[controller].bootstrap, topic)[0]
    others_bootstrap = bootstraps(nodes, others)

    chk = Checker(bootstraps(nodes), topic, 1, writer="p", rate=200).start()
    try:
        chk.wait_acks_after(chk.start_time, 30, count=200)
        pid = nodes[victim].proc.pid
        t_stop = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: stopped(pid), 5, f"node {victim} to stop", 0.01)
            # both waits end before the thaw: the new epoch must open while the old leader sleeps
            leader = wait_for(lambda: new_leader(others_bootstrap, topic, 0, [victim]), PAUSE - 0.5,
                              "a new leader while the old one is paused", 0.05)
            elected = time.monotonic() - t_stop
            left_ms = int(max(0.2, t_stop + PAUSE - time.monotonic()) * 1000)
            try:
                fresh = produce_one_by_one(others_bootstrap, topic, ["fresh-during-pause"],
                                           **{"message.timeout.ms": left_ms, "request.timeout.ms": left_ms})
            except AssertionError as e:
                raise AssertionError(f"{leader}, leader {elected:.3f}s into the pause, acknowledged no write "
                                     f"before the thaw: {e}") from None
            opened = time.monotonic() - t_stop
            _, new_epoch, _ = leadership(nodes[leader].bootstrap, topic, leader)[0]
            # the scenario is a pause of a fixed length: the old leader sleeps through the
            # election and the opening of the new epoch, then wakes up
            time.sleep(max(0.0, t_stop + PAUSE - time.monotonic()))
        finally:
            t_cont = time.monotonic()
            os.kill(pid, signal.SIGCONT)
        assert nodes[victim].proc.poll() is None, f"node {victim} died: {nodes[victim].proc.returncode}"

        # every node, the thawed one included, names the new leader at the new epoch
        def converged():
            views = {i: leadership(nodes[i].bootstrap, topic, i)[0][:2] for i in nodes}
            return views if all(v == (leader, new_epoch) for v in views.values()) else None

        views = wait_for(converged, 5, f"every node's Metadata to name {leader} at epoch {new_epoch}", 0.05)
        stepped_down = time.monotonic() - t_cont
        # the old leader follows the new one: counted in sync again by it
        wait_for(lambda: victim in leadership(nodes[leader].bootstrap, topic, leader)[0][2], 30,
                 f"node {victim} back in the new leader's ISR", 0.1)
        rejoined = time.monotonic() - t_cont
        resumed = chk.wait_acks_after(t_cont, 30, count=200)
    finally:
        chk.stop()
    final = leadership(nodes[leader].bootstrap, topic, leader)[0]
    report = chk.verify(nodes[leader].bootstrap)
    sends = chk.snapshot()
    # acknowledged after the thaw below the new epoch's first write: records the old
    # leader had replicated before the pause (true acks), if any
    late = [s for s in sends if s.ok and s.acked > t_cont and s.offset < fresh[0][0]]
    # the long-lived producer usually gets nothing acknowledged while the leader sleeps:
    # librdkafka sends its metadata refreshes to the frozen node's open connection
    # (answered only after the thaw); the fresh producer above shows the new epoch open
    during = [s for s in sends if s.ok and t_stop < s.acked < t_cont]
    step_down = log_lines(node_logs(nodes[victim]), (f"stepping down partition={topic}-0",), 1)
    print(f"\n[a] leader {victim} (epoch {old_epoch}, controller {controller}) paused {PAUSE:.0f}s: {leader} named "
          f"leader at epoch {new_epoch} after {elected:.3f}s, a fresh write acknowledged at offset {fresh[0][0]} "
          f"after {opened:.3f}s; {len(during)} acks while paused; thawed: every node named {leader} after "
          f"{stepped_down:.3f}s ({views}), {victim} back in sync after {rejoined:.3f}s, {len(late)} records "
          f"below the new epoch's first write acknowledged after the thaw, the producer's acks resumed "
          f"{resumed:.3f}s after the thaw; finally {final}; {report.summary()}")
    print(f"[a] {step_down or 'no step-down logged'}")
    if not report.clean:
        print("[a] node logs:\n    " + log_lines(all_logs(nodes), REPLICATION_WORDS, 80))
    assert new_epoch > old_epoch, (old_epoch, new_epoch)
    assert not chk.fatal, chk.fatal
    assert report.clean, report.summary()
    assert report.acked > 1000, report.summary()


# --- b. twenty quick kill -9 and restart cycles of the leader -------------------------------

def agreed(nodes, topic: str):
    """(leader, epoch, isr) of partition 0 when every node's Metadata names the same
    live leader at the same epoch, else None."""
    views = {i: leadership(nodes[i].bootstrap, topic, i)[0] for i in nodes}
    firsts = {v[:2] for v in views.values()}
    if len(firsts) != 1 or next(iter(firsts))[0] not in nodes:
        return None
    return views[next(iter(firsts))[0]]


CYCLES = 20


def test_twenty_quick_kill_and_restart_cycles_of_the_leader_lose_nothing_acknowledged(cluster3):
    """A CP topic under acks=all load: twenty times, the partition's current leader is
    killed (SIGKILL) and restarted at once on its data dir and ports; each time the node
    must listen again, the partition must get a leader at a newer epoch and the
    producer's writes must be acknowledged again before the next kill. At the end
    nothing acknowledged may be lost, moved, duplicated or reordered."""
    nodes = cluster3
    controller = wait_formed(nodes, 3)
    topic = "bounced"
    # first led off the controller: killing the controller kills the metadata group's
    # leader too (which resumes leading at once when it restarts), killing another node
    # lets the controller fence it and move its partition; leadership goes where it goes
    first = next(i for i in nodes if i != controller)
    create(nodes[controller].bootstrap, topic, assignment=[[first, *[i for i in nodes if i != first]]],
           write_quorum=2, read_quorum=2)
    everyone = bootstraps(nodes)

    chk = Checker(everyone, topic, 1, writer="k", rate=200).start()
    cycles = []
    try:
        chk.wait_acks_after(chk.start_time, 30, count=50)
        for n in range(CYCLES):
            # the leader now, as every node agrees after the previous cycle
            leader, epoch, isr = wait_for(lambda: agreed(nodes, topic), 30, f"cycle {n}: every node to agree", 0.05)
            other = next(i for i in nodes if i != leader)
            was_controller = describe_at(nodes[other].bootstrap)["controller_id"] == leader
            t_kill = time.monotonic()
            nodes[leader].kill()
            nodes[leader].spawn()
            nodes[leader].wait_listening()
            listening = time.monotonic() - t_kill

            def led_anew():
                now, e, _ = leadership(everyone, topic)[0]
                return (now, e) if now in nodes and e > epoch else None

            new, new_epoch = wait_for(led_anew, 30, f"cycle {n}: a leader at an epoch above {epoch}", 0.05)
            named = time.monotonic() - t_kill
            # failover: until a record sent after the kill is acknowledged
            wait_for(lambda: chk.resumed_after(t_kill) is not None, 30, f"cycle {n}: acks after the kill", 0.02)
            cycles.append({"victim": leader, "controller": was_controller, "epoch": (epoch, new_epoch),
                           "new": new, "isr": isr, "listening": listening, "named": named,
                           "failover": chk.resumed_after(t_kill)})
        # everyone back in sync before reading back
        wait_for(lambda: leadership(everyone, topic)[0][2] == sorted(nodes), 60, "every replica back in sync", 0.2)
        chk.wait_acks_after(time.monotonic(), 30, count=50)
    finally:
        chk.stop()
    report = chk.verify(everyone)
    failovers = [c["failover"] for c in cycles]
    print(f"\n[b] {len(cycles)} kill -9 and restart cycles of the leader:")
    for n, c in enumerate(cycles):
        print(f"    {n:2d}: killed {c['victim']}{' (controller)' if c['controller'] else ''} at epoch "
              f"{c['epoch'][0]} (isr {c['isr']}); listening after {c['listening']:.3f}s; {c['new']} leads at epoch "
              f"{c['epoch'][1]} after {c['named']:.3f}s; acks resumed after {c['failover']:.3f}s")
    if failovers:
        print(f"[b] failover min {min(failovers):.3f}s, median {statistics.median(failovers):.3f}s, "
              f"max {max(failovers):.3f}s; {report.acked} acknowledged; {report.summary()}")
    if not report.clean:
        print("[b] node logs:\n    " + log_lines(all_logs(nodes), REPLICATION_WORDS, 120))
    assert len(cycles) == CYCLES
    assert not chk.fatal, chk.fatal
    assert report.clean, report.summary()
    assert report.acked > 1000, report.summary()


# --- c. 20% packet loss on one node does not make leadership flap ------------------------

LOSS_PERCENT = 20
LOSSY_SECONDS = 20.0  # how long the loss lasts: the scenario is a stretch of lossy network


def link_ends(c: NetCluster, i: int) -> list[tuple[list[str], str, str]]:
    """Both ends of node i's veth (test_partition.NetCluster): (command prefix, device,
    what it drops) for its end in its namespace (what the node sends) and the bridge's
    end in the host (what is sent to it). A qdisc acts on what a device sends."""
    return [(["ip", "netns", "exec", c.ns(i)], "eth0", "sent by it"), ([], c.link(i), "sent to it")]


def tc(prefix: list[str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([*prefix, "tc", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(prefix)} tc {' '.join(args)}: {out.stderr.strip()}")
    return out


def add_loss(prefix: list[str], dev: str, percent: int) -> str:
    """Drops `percent`% of the packets `dev` sends: `tc netem loss`, or, on a kernel
    without sch_netem, the same random drop from what traffic control always has: an htb
    root whose second class ends in a pfifo of length 0 (every packet sent there is
    dropped) and a classic-BPF classifier sending a packet there when a random u32
    (`ld rand`) falls below percent% of 2^32. Returns which."""
    out = tc(prefix, "qdisc", "add", "dev", dev, "root", "netem", "loss", f"{percent}%", check=False)
    if out.returncode == 0:
        return "netem"
    if "unknown" not in out.stderr.lower():
        raise AssertionError(f"tc netem on {dev}: {out.stderr.strip()}")
    threshold = int(percent / 100 * 2 ** 32)
    # ld rand; jge threshold ? keep : drop; keep: return 1:1; drop: return 1:2
    program = f"4,32 0 0 {2 ** 32 - 4096 + 56},53 0 1 {threshold},6 0 0 {0x10001},6 0 0 {0x10002}"
    tc(prefix, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1", "r2q", "100000")
    tc(prefix, "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit")
    tc(prefix, "class", "add", "dev", dev, "parent", "1:", "classid", "1:2", "htb", "rate", "10gbit")
    tc(prefix, "qdisc", "add", "dev", dev, "parent", "1:2", "handle", "2:", "pfifo", "limit", "0")
    tc(prefix, "filter", "add", "dev", dev, "parent", "1:", "bpf", "bytecode", program)
    return "htb+bpf (no sch_netem)"


def loss_counts(prefix: list[str], dev: str, how: str) -> tuple[int, int]:
    """(packets passed, packets dropped) by the loss on `dev` so far."""
    if how == "netem":
        out = tc(prefix, "-s", "qdisc", "show", "dev", dev).stdout
        m = re.search(r"qdisc netem .*?Sent \d+ bytes (\d+) pkt \(dropped (\d+)", out, re.S)
        return (int(m[1]), int(m[2])) if m else (-1, -1)
    out = tc(prefix, "-s", "class", "show", "dev", dev).stdout
    sent = re.search(r"class htb 1:1 .*?Sent \d+ bytes (\d+) pkt", out, re.S)
    dropped = re.search(r"class htb 1:2 .*?dropped (\d+)", out, re.S)
    return (int(sent[1]) if sent else -1, int(dropped[1]) if dropped else -1)


def remove_loss(prefix: list[str], dev: str):
    tc(prefix, "qdisc", "del", "dev", dev, "root", check=False)


def test_packet_loss_on_one_node_does_not_make_leadership_flap(net3):
    """Three nodes in network namespaces, a CP topic of 6 partitions under acks=all load;
    one node's link (not the controller's; a node leading some partitions) loses 20% of
    the packets in each direction for 20 s. The link is bad, not cut: TCP retransmits,
    the node may even be fenced now and then, but leadership must not flap. Concretely,
    counted in leader epochs (each change of leader bumps its partition's epoch): no
    partition's leader changes more than once, the changes together are at most the
    number of partitions the lossy node led, and no other partition changes (moving the
    lossy node's partitions away once is allowed, moving them back and forth is not).
    Nothing acknowledged may be lost."""
    c = net3
    if shutil.which("tc") is None:
        pytest.skip("needs the `tc` tool (iproute2)")
    everyone = ",".join(c.bootstrap(i) for i in c.ids)
    def formed():
        d = describe_at(c.bootstrap(1))
        return d["controller_id"] if len(d["brokers"]) == 3 and d["controller_id"] in c.ids else None

    controller = wait_for(formed, 60, "the cluster to form", 0.3)
    topic, partitions = "lossy", 6
    create(c.bootstrap(controller), topic, partitions, write_quorum=2, read_quorum=2)
    observer = controller  # a healthy node answers the Metadata requests that count the changes

    chk = Checker(everyone, topic, partitions, writer="l", rate=300).start()
    timeline = []  # (seconds into the loss, {partition: (leader, epoch)}) at every change seen
    lossy, lossy_ends, how = None, [], {}
    try:
        try:
            chk.wait_acks_after(chk.start_time, 30, count=20)
            before = leadership(c.bootstrap(observer), topic, observer)
            led = {i: sorted(p for p, (l, _, _) in before.items() if l == i) for i in c.ids}
            lossy = max((i for i in c.ids if i != controller), key=lambda i: len(led[i]))
            assert led[lossy], f"no node but the controller leads a partition: {before}"
            t_loss = time.monotonic()
            for prefix, dev, what in link_ends(c, lossy):
                lossy_ends.append((prefix, dev))
                how[what] = add_loss(prefix, dev, LOSS_PERCENT)
            # the scenario is a stretch of lossy network: watch the leaders throughout it
            last = {p: v[:2] for p, v in before.items()}
            while time.monotonic() < t_loss + LOSSY_SECONDS:
                try:
                    now = {p: v[:2] for p, v in leadership(c.bootstrap(observer), topic, observer).items()}
                except Exception:  # noqa: BLE001 - no answer in time: ask again
                    now = last
                if now != last:
                    timeline.append((round(time.monotonic() - t_loss, 2),
                                     {p: v for p, v in now.items() if v != last[p]}))
                    last = now
                time.sleep(0.1)
            t_end = time.monotonic()
            during = leadership(c.bootstrap(observer), topic, observer)
            counts = {what: loss_counts(prefix, dev, how[what]) for prefix, dev, what in link_ends(c, lossy)}
        finally:
            for prefix, dev in lossy_ends:
                remove_loss(prefix, dev)
        t_heal = time.monotonic()
        chk.wait_acks_after(t_heal, 30, count=20)
    finally:
        chk.stop()
    lossy_acks = [s for s in chk.snapshot() if s.ok and t_loss < s.acked < t_end]
    gaps = {p: round(g, 3) for p, (g, _) in stalls(lossy_acks, t_loss, t_end).items()}
    logs = [c.workdir / f"node{i}.log" for i in c.ids]
    fenced = log_lines(logs, (f"fencing it broker={lossy} ",), 1000).count("fencing it")
    report = chk.verify(everyone)
    changes = {p: during[p][1] - before[p][1] for p in before}
    total = sum(changes.values())
    print(f"\n[c] node {lossy} (led partitions {led[lossy]}; controller {controller}): {LOSS_PERCENT}% of the "
          f"packets on its link lost for {LOSSY_SECONDS:.0f}s; "
          + "; ".join(f"{what} ({how[what]}): {d} of {p + d} dropped ({d / max(1, p + d):.1%})"
                      for what, (p, d) in counts.items())
          + f"; the controller fenced it {fenced} times; leader epoch changes per partition {changes} (total "
          f"{total}); leaders before {({p: v[:2] for p, v in before.items()})}, after "
          f"{({p: v[:2] for p, v in during.items()})}; changes seen by node {observer}: {timeline}; "
          f"{len(lossy_acks)} acks during the loss, the longest gap between acks per partition then {gaps}; "
          f"{report.summary()}")
    if total or fenced:
        print("[c] node logs:\n    " + log_lines(logs, ("fenc", "moved partition", "preferred", "session lost",
                                                         "registered", "stepping down"), 60))
    assert all(d > 0 for _, d in counts.values()), f"the loss dropped nothing: {counts}"
    assert all(n <= 1 for n in changes.values()), f"a partition's leader changed more than once: {changes}, {timeline}"
    assert total <= len(led[lossy]), (f"{total} leader changes for the {len(led[lossy])} partitions node {lossy} led: "
                                      f"{changes}, {timeline}")
    assert all(during[p][1] == before[p][1] for p in before if p not in led[lossy]), (
        f"partitions the lossy node did not lead changed leader: {changes}")
    assert not chk.fatal, chk.fatal
    assert report.clean, report.summary()
