#!/usr/bin/env python3
"""Turns one benches/run.sh run into a table (stdout) and the results section of
docs/BENCHMARKS.md. Targets are reported, never asserted.

usage: report.py OUT_DIR REPRO RECORDS RECORD_BYTES PARTITIONS ACKS LAT_RATE LAT_SECS WARMUP KAFKA_HEAP [DOC]
"""
import json
import math
import os
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


def load(out, target, run):
    path = os.path.join(out, f"{target}.{run}.json")
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None


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
    out, repro, records, rbytes, parts, acks, lat_rate, lat_secs, warmup, heap = sys.argv[1:11]
    doc = sys.argv[11] if len(sys.argv) > 11 else ""
    m = facts(out, "machine")
    b = facts(out, "build")
    f = {t: facts(out, t) for t in ("dlog", "kafka")}
    thr = {t: load(out, t, "throughput") for t in f}
    lat = {t: load(out, t, "latency") for t in f}

    def metric(t, what):
        if what == "produce":
            return num(get(thr[t], "produce", "mib_per_sec"))
        if what == "produce_rps":
            return num(get(thr[t], "produce", "records_per_sec"))
        if what == "consume":
            return num(get(thr[t], "consume", "mib_per_sec"))
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
            return num(get(src[t], "produce", "latency_ms", q))
        raise KeyError(what)

    d_p, k_p = metric("dlog", "produce"), metric("kafka", "produce")
    d_c, k_c = metric("dlog", "consume"), metric("kafka", "consume")
    d_s, d_i = metric("dlog", "start"), metric("dlog", "idle")

    def status(ok):
        return "n/a" if ok is None else ("met" if ok else "NOT met")

    produce_ok = None
    if d_p is not None:
        produce_ok = d_p >= 150 and (k_p is not None and d_p >= 1.5 * k_p)
    rows = [
        ("produce MiB/s", d_p, k_p, ratio(d_p, k_p), f">= 150 and >= 1.5x Kafka: {status(produce_ok)}"),
        ("produce records/s", metric("dlog", "produce_rps"), metric("kafka", "produce_rps"),
         ratio(metric("dlog", "produce_rps"), metric("kafka", "produce_rps")), ""),
        ("consume MiB/s", d_c, k_c, ratio(d_c, k_c),
         f">= 1.5x Kafka: {status(None if d_c is None or k_c is None else d_c >= 1.5 * k_c)}"),
    ]
    lat_rows = []
    for q, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
        if int(lat_rate) > 0:
            d, k = metric("dlog", f"lat:lat:{q}"), metric("kafka", f"lat:lat:{q}")
            lat_rows.append((f"ack latency {label} ms @ {int(lat_rate):,} rec/s", d, k, ratio(d, k), "lower is better"))
    for q, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
        d, k = metric("dlog", f"lat:thr:{q}"), metric("kafka", f"lat:thr:{q}")
        lat_rows.append((f"ack latency {label} ms, saturated", d, k, ratio(d, k), "lower is better; queueing-bound"))
    tail_rows = [
        ("start -> accepting connections ms", d_s, metric("kafka", "start"), ratio(d_s, metric("kafka", "start")),
         f"DLog < 100 ms: {status(None if d_s is None else d_s < 100)}"),
        ("idle RSS MiB", d_i, metric("kafka", "idle"), ratio(d_i, metric("kafka", "idle")),
         f"DLog < 30 MiB: {status(None if d_i is None else d_i < 30)}"),
        ("peak RSS MiB (after the load)", metric("dlog", "peak"), metric("kafka", "peak"),
         ratio(metric("dlog", "peak"), metric("kafka", "peak")), ""),
    ]
    table = ["| metric | DLog | Kafka | DLog/Kafka | target (reported, not asserted) |",
             "| --- | ---: | ---: | ---: | --- |"]
    for name, d, k, r, target in rows + lat_rows + tail_rows:
        digits = 2 if "latency" in name else (0 if "records/s" in name or "start" in name else 1)
        table.append(f"| {name} | {fmt(d, digits)} | {fmt(k, digits)} | {r} | {target} |")

    notes = []
    for t, name in (("dlog", "DLog"), ("kafka", "Kafka")):
        for k, v in sorted(f[t].items()):
            if k == "failed" or k.endswith("_failed") or k in ("crashed", "stop"):
                notes.append(f"- {name}: {k}: {v}")
        for run, data in (("throughput", thr[t]), ("latency", lat[t])):
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
            notes.append(f"- DLog log, last warning: `{w[-1][:200]}`")

    kafka_ver = f["kafka"].get("version", "n/a")
    builds = ", ".join(f"{k.removesuffix('_secs')} {v} s" for k, v in b.items() if k.endswith("_secs"))
    lines = [
        f"Run of {m.get('date', '?')} at commit {m.get('commit', '?')}.",
        "",
        f"Machine: {m.get('nproc')} CPUs ({m.get('cpu')}), {m.get('mem_gib')} GiB memory, {m.get('kernel')}; "
        f"{m.get('java')}; {m.get('rustc')}. Load average (1/5/15 min) before the run {m.get('load_before')}, "
        f"after {m.get('load_after')}.",
        "",
        f"Workload: {int(records):,} records of {int(rbytes):,} B values, no keys, {parts} partitions (RF 1), "
        f"acks={acks}, compression none, linger.ms 5, batch.size 1,000,000; produced round-robin, then read back "
        f"from the beginning of every partition. A {int(warmup):,}-record produce+consume warm-up precedes it on each "
        f"broker. Latency run: {int(lat_rate):,} records/s for {lat_secs} s. "
        f"Apache Kafka {kafka_ver} single-node KRaft, heap {heap}. MiB = 2^20 bytes of record values.",
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
