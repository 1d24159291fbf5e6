#!/usr/bin/env python3
"""Turns one benches/replicated.sh run into a table (stdout) and the replicated section
of docs/BENCHMARKS.md. Targets are reported, never asserted.

usage: replicated_report.py OUT REPRO RATE LAT_SECS RECORDS RECORD_BYTES PARTITIONS REPEAT
                            FAILOVERS FAILOVER_RATE KAFKA_HEAP [DOC]
"""
import json
import os
import statistics
import sys

from report import facts, fmt, get, load, num

BEGIN = "<!-- replicated:begin (written by benches/replicated.sh) -->"
END = "<!-- replicated:end -->"

VARIANTS = [
    ("dlog", "dlog-cache", "DLog, write caching on"),
    ("dlog", "dlog-sync", "DLog, write caching off"),
    ("kafka", "kafka", "Kafka"),
    ("kafka", "kafka-fsync", "Kafka, flush.messages=1"),
]
# (numerator, denominator) columns compared as ratios
RATIOS = [("dlog-cache", "kafka"), ("dlog-sync", "kafka-fsync")]


def spread(vals):
    """'median (min-max)' of the values, or n/a."""
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return None, "n/a"
    med = statistics.median(vals)
    digits = 2 if med < 100 else 1
    if len(vals) == 1:
        return med, fmt(med, digits)
    return med, f"{fmt(med, digits)} ({fmt(vals[0], digits)}–{fmt(vals[-1], digits)})"


def failover_runs(out, target, f, runs):
    """Per failover run: ms from the kill to the first ack of a record sent after it, on
    every partition the killed node led (the slowest of them), and to the metadata naming
    new leaders; plus the records that failed delivery."""
    results = []
    for i in range(1, runs + 1):
        kill = num(f.get(f"failover_{i}_kill_us"))
        victim = num(f.get(f"failover_{i}_victim"))
        try:
            with open(os.path.join(out, f"{target}.failover.{i}.before")) as fh:
                before = json.loads(fh.read())
            with open(os.path.join(out, f"{target}.failover.{i}.acks")) as fh:
                acks = [tuple(int(x) for x in line.split()) for line in fh if not line.startswith("#")]
        except (OSError, ValueError):
            continue
        if kill is None or victim is None:
            continue
        led = {p["partition"] for p in before["partitions"] if p["leader"] == victim}
        first = {}
        failed = 0
        for part, sent, done, ok in acks:
            if not ok:
                failed += 1
            elif part in led and sent >= kill:
                first[part] = min(first.get(part, done), done)
        recovered = None if set(first) != led else max(first.values())
        named = num(f.get(f"failover_{i}_metadata_us"))
        results.append({
            "recovered_ms": None if recovered is None else (recovered - kill) / 1000.0,
            "metadata_ms": None if named is None else (named - kill) / 1000.0,
            "partitions": len(led),
            "failed": failed,
            "victim": int(victim),
        })
    return results


def main():
    (out, repro, rate, lat_secs, records, rbytes, parts, repeat, failovers, fo_rate, heap) = sys.argv[1:12]
    doc = sys.argv[12] if len(sys.argv) > 12 else ""
    repeat, failovers = int(repeat), int(failovers)
    m = facts(out, "machine")
    f = {t: facts(out, t) for t in ("dlog", "kafka")}

    cols = {}
    for target, variant, _ in VARIANTS:
        lat = load(out, target, f"{variant}.latency", repeat)
        lat5 = load(out, target, f"{variant}.latency5", repeat)
        thr = load(out, target, f"{variant}.throughput", repeat)
        cols[variant] = {
            "p50": spread([num(get(r, "produce", "latency_ms", "p50")) for r in lat]),
            "p99": spread([num(get(r, "produce", "latency_ms", "p99")) for r in lat]),
            "p999": spread([num(get(r, "produce", "latency_ms", "p999")) for r in lat]),
            "p50_5": spread([num(get(r, "produce", "latency_ms", "p50")) for r in lat5]),
            "p99_5": spread([num(get(r, "produce", "latency_ms", "p99")) for r in lat5]),
            "p999_5": spread([num(get(r, "produce", "latency_ms", "p999")) for r in lat5]),
            "produce": spread([num(get(r, "produce", "mib_per_sec")) for r in thr]),
            "consume": spread([num(get(r, "consume", "mib_per_sec")) for r in thr]),
        }
    fo = {t: failover_runs(out, t, f[t], failovers) for t in ("dlog", "kafka")}
    fo_cols = {"dlog-cache": fo["dlog"], "kafka": fo["kafka"]}
    for variant, runs in fo_cols.items():
        cols[variant]["failover"] = spread([r["recovered_ms"] for r in runs])
        cols[variant]["failover_md"] = spread([r["metadata_ms"] for r in runs])
        cols[variant]["failover_failed"] = (None, str(sum(r["failed"] for r in runs)) if runs else "n/a")
    na = (None, "")

    rows = [
        ("p50", f"acks=all latency p50 ms @ {int(rate):,} rec/s", "lower is better"),
        ("p99", f"acks=all latency p99 ms @ {int(rate):,} rec/s", "DLog (caching on) <= 2 ms and <= 1/3 of Kafka"),
        ("p999", f"acks=all latency p99.9 ms @ {int(rate):,} rec/s", "lower is better"),
        ("p50_5", f"acks=all latency p50 ms @ {int(rate):,} rec/s, linger.ms 5", "lower is better"),
        ("p99_5", f"acks=all latency p99 ms @ {int(rate):,} rec/s, linger.ms 5", "lower is better"),
        ("p999_5", f"acks=all latency p99.9 ms @ {int(rate):,} rec/s, linger.ms 5", "lower is better"),
        ("produce", "produce MiB/s (unthrottled)", "higher is better"),
        ("consume", "consume MiB/s (read back)", "higher is better"),
        ("failover", "kill -9 leader -> first ack on each of its partitions, ms", "DLog < 1,000 ms"),
        ("failover_md", "kill -9 leader -> metadata names new leaders, ms", ""),
        ("failover_failed", "records failed in the failover runs", "0"),
    ]
    head = "| metric | " + " | ".join(name for _, _, name in VARIANTS) + " | " + \
        " | ".join(f"{a} / {b}" for a, b in RATIOS) + " | target (reported, not asserted) |"
    lines = [head, "| --- |" + " ---: |" * (len(VARIANTS) + len(RATIOS)) + " --- |"]
    verdicts = []
    for key, label, target in rows:
        cells = [cols[v].get(key, na)[1] or "" for _, v, _ in VARIANTS]
        ratios = []
        for a, b in RATIOS:
            va, vb = cols[a].get(key, na)[0], cols[b].get(key, na)[0]
            ratios.append("" if va is None or vb is None or vb == 0 or key == "failover_failed" else f"{va / vb:.2f}x")
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + f" | {target} |")
    p99, kp99, fov = cols["dlog-cache"]["p99"][0], cols["kafka"]["p99"][0], cols["dlog-cache"].get("failover", na)[0]
    if p99 is not None:
        verdicts.append(f"p99 <= 2 ms with write caching: {'met' if p99 <= 2 else 'NOT met'} ({fmt(p99, 2)} ms)")
    if p99 is not None and kp99:
        verdicts.append(f"p99 <= 1/3 of Kafka's: {'met' if p99 * 3 <= kp99 else 'NOT met'} ({p99 / kp99:.2f}x)")
    if fov is not None:
        verdicts.append(f"failover < 1 s: {'met' if fov < 1000 else 'NOT met'} ({fmt(fov, 0)} ms median)")

    failures = [f"{t}: {k}: {v}" for t in f for k, v in f[t].items() if k.endswith("failed")]
    victims = {t: [r["victim"] for r in fo[t]] for t in fo}
    text = [
        f"Run of {m.get('date', '?')} at commit {m.get('commit', '?')}.",
        "",
        f"Machine: {m.get('nproc', '?')} CPUs ({m.get('cpu', '?')}), {m.get('mem_gib', '?')} GiB memory, "
        f"{m.get('kernel', '?')}; {m.get('java', '?')}; {m.get('rustc', '?')}. Load average (1/5/15 min) "
        f"before the run {m.get('load_before', '?')}, after {m.get('load_after', '?')}.",
        "",
        f"Both clusters: 3 nodes on loopback of this one machine, topics of {parts} partitions with replication "
        f"factor 3 and min.insync.replicas 2, acks=all, {int(rbytes):,} B values, no keys, compression none, "
        f"linger.ms 0 in latency runs (unless the row says 5, librdkafka's default) and 5 in throughput runs. "
        f"Latency runs: {int(rate):,} records/s for {lat_secs} s; throughput runs: "
        f"{int(records):,} records, produced then read back. {repeat} round(s) per variant: medians "
        f"(min–max). Failover: {failovers} run(s) per broker at {int(fo_rate):,} records/s; the leader of "
        f"partition 0 was killed with the producer's retry backoff capped at 250 ms (nodes {victims['dlog'] or '-'} for DLog, {victims['kafka'] or '-'} for Kafka) "
        f"and restarted after the run. Apache Kafka {f['kafka'].get('version', '?')} in KRaft combined mode, "
        f"heap {heap} per broker.",
        "",
        *lines,
        "",
        "Targets: " + ("; ".join(verdicts) if verdicts else "n/a") + ".",
    ]
    if failures:
        text += ["", "Failures in this run:", *[f"- {x}" for x in failures]]
    text += ["", "Reproduce:", "", "```sh", repro, "```"]
    body = "\n".join(text)
    print(body)
    if doc:
        with open(doc) as fh:
            cur = fh.read()
        block = f"{BEGIN}\n{body}\n{END}"
        if BEGIN in cur and END in cur:
            pre, rest = cur.split(BEGIN, 1)
            post = rest.split(END, 1)[1]
            cur = pre + block + post
        else:
            cur = cur.rstrip("\n") + "\n\n## Replicated: 3 nodes, RF 3 (latest results)\n\n" + block + "\n"
        with open(doc, "w") as fh:
            fh.write(cur)
        print(f"written to {doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
