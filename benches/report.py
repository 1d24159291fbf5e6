#!/usr/bin/env python3
"""Turns one benches/run.sh run into a table (stdout) and the results section of
docs/BENCHMARKS.md. Targets are reported, never asserted.

usage: report.py OUT_DIR REPRO RECORDS RECORD_BYTES PARTITIONS ACKS LAT_RATE LAT_SECS WARMUP KAFKA_HEAP [DOC]
"""
import json
import math
import os
import re
import sys

BEGIN = "<!-- results:begin (written by benches/run.sh) -->"
END = "<!-- results:end -->"


def facts(out, name):
    d = {}
    path = os.path.join(out, name + ".facts")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    d[k] = v
    return d


def load(out, target, run, repeat):
    """The JSON reports of runs `run.1` .. `run.N` that produced one."""
    found = []
    for i in range(1, repeat + 1):
        path = os.path.join(out, f"{target}.{run}.{i}.json")
        try:
            with open(path) as f:
                found.append(json.loads(f.read().strip().splitlines()[-1]))
        except (OSError, ValueError, IndexError):
            pass
    return found


def num(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def fmt(v, digits=1):
    return "n/a" if v is None else f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def get(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p)
    return d


def main():
    out, repro, records, rbytes, parts, acks, lat_rate, lat_secs, warmup, heap, repeat = sys.argv[1:12]
    repeat = int(repeat)
    doc = sys.argv[12] if len(sys.argv) > 12 else ""
    m = facts(out, "machine")
    b = facts(out, "build")
    f = {t: facts(out, t) for t in ("dlog", "kafka")}
    thr = {t: load(out, t, "throughput", repeat) for t in f}
    lat = {t: load(out, t, "latency", repeat) for t in f}
    spreads = {}

    def median(t, what, runs, *path):
        vals = sorted(v for v in (num(get(r, *path)) for r in runs) if v is not None)
        if not vals:
            return None
        n = len(vals)
        mid = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
        spreads[(t, what)] = (vals[0], vals[-1], n)
        return mid

    def metric(t, what):
        if what == "produce":
            return median(t, what, thr[t], "produce", "mib_per_sec")
        if what == "produce_rps":
            return median(t, what, thr[t], "produce", "records_per_sec")
        if what == "consume":
            return median(t, what, thr[t], "consume", "mib_per_sec")
        if what == "ready":
            return median(t, what, thr[t] + lat[t], "produce", "topic_ready_ms")
        if what == "cpu":  # broker CPU seconds per GiB of record values produced and read back
            tck = num(m.get("clk_tck")) or 100
            gib = int(records) * int(rbytes) / 2**30
            per = [{"v": ticks / tck / gib} for i in range(1, repeat + 1)
                   if (ticks := num(f[t].get(f"throughput_cpu_ticks.{i}"))) is not None]
            return median(t, what, per, "v")
        if what == "start":
            return num(f[t].get("start_ms"))
        if what == "idle":
            v = num(f[t].get("idle_rss_kib"))
            return None if v is None else v / 1024
        if what == "peak":
            v = num(f[t].get("peak_rss_kib"))
            return None if v is None else v / 1024
        if what.startswith("lat"):  # lat:<run>:<quantile>
            _, run, q = what.split(":")
            src = thr if run == "thr" else lat
            return median(t, what, src[t], "produce", "latency_ms", q)
        raise KeyError(what)

    d_p, k_p = metric("dlog", "produce"), metric("kafka", "produce")
    d_c, k_c = metric("dlog", "consume"), metric("kafka", "consume")
    d_s, d_i = metric("dlog", "start"), metric("dlog", "idle")

    def status(ok):
        return "n/a" if ok is None else ("met" if ok else "NOT met")

    abs_ok = None if d_p is None else d_p >= 150
    rel_ok = None if d_p is None or k_p is None else d_p >= 1.5 * k_p
    c_ok = None if d_c is None or k_c is None else d_c >= 1.5 * k_c
    k_s = metric("kafka", "start")
    rows = [  # (name, metric key, digits, target)
        ("produce MiB/s", "produce", 1, f">= 150: {status(abs_ok)}; >= 1.5x Kafka: {status(rel_ok)}"),
        ("produce records/s", "produce_rps", 0, ""),
        ("consume MiB/s", "consume", 1, f">= 1.5x Kafka: {status(c_ok)}"),
        ("broker CPU s per GiB (produce + read back)", "cpu", 2, "lower is better"),
    ]
    for q, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
        if int(lat_rate) > 0:
            rows.append((f"ack latency {label} ms @ {int(lat_rate):,} rec/s", f"lat:lat:{q}", 2, "lower is better"))
    for q, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
        rows.append((f"ack latency {label} ms, saturated", f"lat:thr:{q}", 2, "lower is better; queueing-bound"))
    rows += [
        ("start -> accepting connections ms", "start", 0,
         f"DLog < 100 ms: {status(None if d_s is None else d_s < 100)}"
         + (" (Kafka: scripts/kafka.sh start)" if k_s is not None else "")),
        ("new topic acks promptly after ms (probe)", "ready", 0, "excluded from the figures above"),
        ("idle RSS MiB", "idle", 1, f"DLog < 30 MiB: {status(None if d_i is None else d_i < 30)}"),
        ("peak RSS MiB (after the load)", "peak", 1, ""),
    ]

    def cell(t, key, digits):
        v = metric(t, key)
        lo_hi = spreads.get((t, key))
        if v is not None and lo_hi and lo_hi[2] > 1:
            return f"{fmt(v, digits)} ({fmt(lo_hi[0], digits)}–{fmt(lo_hi[1], digits)})"
        return fmt(v, digits)

    table = ["| metric | DLog | Kafka | DLog/Kafka | target (reported, not asserted) |",
             "| --- | ---: | ---: | ---: | --- |"]
    for name, key, digits, target in rows:
        d, k = metric("dlog", key), metric("kafka", key)
        table.append(f"| {name} | {cell('dlog', key, digits)} | {cell('kafka', key, digits)} | {ratio(d, k)} | {target} |")

    notes = []
    for t, name in (("dlog", "DLog"), ("kafka", "Kafka")):
        for k, v in sorted(f[t].items()):
            if k == "failed" or k.endswith("_failed") or k in ("crashed", "stop"):
                notes.append(f"- {name}: {k}: {v}")
        runs = [(f"throughput {i + 1}", r) for i, r in enumerate(thr[t])]
        runs += [(f"latency {i + 1}", r) for i, r in enumerate(lat[t])]
        for run, data in runs:
            p = get(data, "produce")
            if p and (p.get("delivery_errors") or p.get("records_acked") != p.get("records_sent")):
                notes.append(f"- {name} {run}: {p['records_acked']} of {p['records_sent']} records acked, "
                             f"{p['delivery_errors']} delivery errors (first: {p.get('first_delivery_error')})")
            errs = get(data, "client_errors") or []
            if errs:
                notes.append(f"- {name} {run}: client reported {len(errs)} warning(s), first: `{errs[0][:200]}`")
    warn_path = os.path.join(out, "dlog.warnings")
    if os.path.exists(warn_path):
        with open(warn_path) as wf:
            w = [line.strip() for line in wf if line.strip()]
        if w:
            notes.append(f"- DLog logged {len(w)} WARN/ERROR line(s); first: `{w[0][:300]}`")
            if len(w) > 1:
                notes.append(f"  last: `{w[-1][:300]}`")
    # No paths of this machine in the report: keep only the last component.
    notes = [re.sub(r"(?:/[\w.+-]+)+/", ".../", n) for n in notes]

    kafka_ver = f["kafka"].get("version", "n/a")
    builds = ", ".join(f"{k.removesuffix('_secs')} {v} s" for k, v in b.items() if k.endswith("_secs"))
    warm_text = ""
    if int(warmup) > 0:
        warm_text = f"Each broker is first warmed up (unmeasured) with a {int(warmup):,}-record produce+consume"
        warm_text += " and a 5 s run at the latency run's rate. " if int(lat_rate) > 0 else ". "
    lines = [
        f"Run of {m.get('date', '?')} at commit {m.get('commit', '?')}.",
        "",
        f"Machine: {m.get('nproc')} CPUs ({m.get('cpu')}), {m.get('mem_gib')} GiB memory, {m.get('kernel')}; "
        f"{m.get('java')}; {m.get('rustc')}. Load average (1/5/15 min) before the run {m.get('load_before')}, "
        f"after {m.get('load_after')}.",
        "",
        f"Workload: {int(records):,} records of {int(rbytes):,} B values, no keys, {parts} partitions (RF 1), "
        f"acks={acks}, compression none, linger.ms 5, batch.size 1,000,000; produced round-robin, then read back "
        f"from the beginning of every partition. {warm_text}"
        f"Latency run: {int(lat_rate):,} records/s for {lat_secs} s. Each measured run {repeat} time(s) per broker: "
        f"the table shows the median (min–max). Apache Kafka {kafka_ver}, single-node KRaft, heap {heap}. "
        f"MiB = 2^20 bytes of record values.",
        "",
        *table,
        "",
    ]
    if builds:
        lines += [f"Build times in this run (incremental): {builds}.", ""]
    if notes:
        lines += ["Problems seen in this run:", "", *notes, ""]
    lines += ["Reproduce:", "", "```sh", repro, "```"]
    section = "\n".join(lines)
    print(section)

    if doc:
        text = ""
        if os.path.exists(doc):
            with open(doc) as df:
                text = df.read()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            text = f"{head}{BEGIN}\n{section}\n{END}{tail}"
        else:
            text = f"{text.rstrip()}\n\n## Latest results\n\n{BEGIN}\n{section}\n{END}\n".lstrip()
        with open(doc, "w") as df:
            df.write(text)
        print(f"\nbench: results written to {os.path.relpath(doc)}", file=sys.stderr)


if __name__ == "__main__":
    main()
