#!/usr/bin/env python3
"""Helpers of bench/gateway.sh (standard library only).

    gateway.py probe --addr HOST:PORT --request TEXT --label L [--expect-prefix P] [--expect-suffix S]
        One request on a new connection, timed from just before its first
        byte is written to the end of the answer (EOF): one JSON line.
    gateway.py serving-line --label L
        The worker's `serving` log line on stdin (text or JSON) as one JSON
        record: label L/ORIGIN (native_code), ms its load_ms.
    gateway.py free-port
        A free TCP port on 127.0.0.1.
    gateway.py ready-zero FILE
        Exit 0 when the NurFunction JSON in FILE is Ready=True with reason
        ScaledToZero and status.replicas 0.
    gateway.py report RECORDS OUTDIR --name NAME [--meta FILE]
        Records (nur-load and probe JSON lines) to OUTDIR/NAME.{json,md}
        and the tables on stdout.
"""

import argparse
import json
import math
import os
import re
import socket
import sys
import time


def unescape(text):
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            out.append({"r": "\r", "n": "\n", "t": "\t"}.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out).encode()


def probe(args):
    host, port = args.addr.rsplit(":", 1)
    request = unescape(args.request)
    prefix = unescape(args.expect_prefix)
    suffix = unescape(args.expect_suffix)
    record = {"label": args.label, "addr": args.addr, "kind": "probe", "request_bytes": len(request)}
    try:
        s = socket.create_connection((host, int(port)), timeout=args.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(args.timeout)
        answer, first = b"", None
        t0 = time.perf_counter()
        s.sendall(request)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            if first is None:
                first = time.perf_counter()
            answer += chunk
        t1 = time.perf_counter()
        s.close()
        record.update({
            "ms": (t1 - t0) * 1000,
            "first_byte_ms": ((first or t1) - t0) * 1000,
            "response_bytes": len(answer),
            "status": answer.split(b"\r\n", 1)[0].decode("latin-1"),
            "ok": answer.startswith(prefix) and answer.endswith(suffix),
        })
    except OSError as e:
        record.update({"ok": False, "error": str(e)})
    print(json.dumps(record))
    return 0 if record["ok"] else 1


def serving_line(args):
    """The worker's `serving` log line on stdin, as a probe-like record:
    ms = its load_ms, the label suffixed with its native_code origin."""
    for line in sys.stdin:
        if " serving " not in line and '"serving"' not in line:
            continue
        origin = re.search(r'native_code"?[=:]"?(\w+)', line)
        took = re.search(r'load_ms"?[=:](\d+)', line)
        if origin and took:
            print(json.dumps({"label": "%s/%s" % (args.label, origin.group(1)), "kind": "probe",
                              "ok": True, "ms": float(took.group(1))}))
            return 0
    return 1


def free_port(_args):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def ready_zero(args):
    try:
        f = json.load(open(args.file))
    except (OSError, ValueError):
        return 1
    status = f.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    ok = (ready and ready[0].get("status") == "True" and ready[0].get("reason") == "ScaledToZero"
          and (status.get("replicas") or 0) == 0)
    return 0 if ok else 1


# --- report ----------------------------------------------------------------------


def ms(us):
    return None if us is None else us / 1000.0


def fmt_ms(v, digits=2):
    if v is None:
        return "–"
    if v >= 100:
        return "%.0f ms" % v
    if v >= 10:
        return "%.1f ms" % v
    return ("%%.%df ms" % digits) % v


def nearest_rank(values, q):
    """The q-quantile by nearest rank (p95 of 20 samples: the 19th)."""
    values = sorted(values)
    if not values:
        return None
    return values[max(0, math.ceil(q * len(values)) - 1)]


def load_rows(records):
    """(function, round) -> {direct, gateway} nur-load records."""
    rows = {}
    for r in records:
        if "rps" not in r:
            continue
        # label: FUNCTION/PATH/ROUND
        function, path, rnd = r["label"].split("/")
        rows.setdefault((function, int(rnd)), {})[path] = r
    out = []
    order = lambda kv: ("client" in kv[0][0], "@" in kv[0][0], not kv[0][0].startswith("echo"), kv[0])
    for (function, rnd), pair in sorted(rows.items(), key=order):
        d, g = pair.get("direct"), pair.get("gateway")
        row = {"function": function, "round": rnd, "clients": (d or g or {}).get("clients"),
               "rate": (d or g or {}).get("rate")}
        if d and g:
            ratio = g["rps"] / d["rps"] if d["rps"] else None
            added_p99 = ms(g["latency_us"]["p99"] - d["latency_us"]["p99"])
            added_p50 = ms(g["latency_us"]["p50"] - d["latency_us"]["p50"])
            row.update({
                "direct_rps": d["rps"], "gateway_rps": g["rps"], "ratio": ratio,
                "direct_p50_ms": ms(d["latency_us"]["p50"]), "direct_p99_ms": ms(d["latency_us"]["p99"]),
                "gateway_p50_ms": ms(g["latency_us"]["p50"]), "gateway_p99_ms": ms(g["latency_us"]["p99"]),
                "added_p50_ms": added_p50, "added_p99_ms": added_p99,
                "direct_errors": d["errors"], "gateway_errors": g["errors"],
                "gateway_cpu_us_per_request": g.get("cpu", {}).get("gateway_us_per_request"),
                "worker_cpu_us_per_request_direct": d.get("cpu", {}).get("worker_us_per_request"),
                "worker_cpu_us_per_request_gateway": g.get("cpu", {}).get("worker_us_per_request"),
                "host_time_wait_to_pod_direct": d.get("host_time_wait_to_pod"),
                "host_time_wait_to_pod_gateway": g.get("host_time_wait_to_pod"),
                "throughput_goal_met": ratio is not None and ratio >= 0.8,
                "p99_goal_met": added_p99 <= 1.0,
            })
        out.append(row)
    return out


def wake_rows(records):
    by = {}
    for r in records:
        if r.get("kind") == "probe":
            by.setdefault(r["label"], []).append(r)
    out = []
    for label, rs in by.items():
        good = [r["ms"] for r in rs if r.get("ok")]
        out.append({
            "case": label, "n": len(rs), "failed": len(rs) - len(good),
            "min_ms": min(good) if good else None,
            "p50_ms": nearest_rank(good, 0.5), "p95_ms": nearest_rank(good, 0.95),
            "max_ms": max(good) if good else None,
            "mean_ms": sum(good) / len(good) if good else None,
        })
    return out


def row_name(r, loads):
    base = r["function"].split("-%sclient" % r.get("clients"))[0].split("@")[0]
    rounds = len({x["round"] for x in loads
                  if x.get("clients") == r.get("clients") and x.get("rate") == r.get("rate")})
    clients = r.get("clients")
    extra = "%s client%s" % (clients, "" if clients == 1 else "s")
    if r.get("rate"):
        extra += ", %s req/s offered" % format(round(r["rate"]), ",")
    if rounds > 1:
        extra += ", round %d" % r["round"]
    return "%s (%s)" % (base, extra)


def markdown(meta, loads, wakes):
    m = meta.get("machine", {})
    p = meta.get("parameters", {})
    lines = ["# nur-gateway and scale to zero, %s" % meta.get("finished", "?"), ""]
    lines.append("Machine: %s; %s CPUs (`nproc`), %s, %s GiB, %s, Linux %s; load average before %s, at the start of the load runs %s, after %s."
                 % (m.get("kind", "?"), m.get("nproc"), m.get("cpu"), m.get("memory_gib"), m.get("os"),
                    m.get("kernel"), m.get("load_before"), m.get("load_at_load_start") or "–", m.get("load_after")))
    lines.append("Commit %s%s; script ran %s s (%s to %s)."
                 % (meta.get("commit"), " (with uncommitted changes in: %s)" % meta["dirty"] if meta.get("dirty") else "",
                    meta.get("elapsed_s"), meta.get("started"), meta.get("finished")))
    lines.append("Load: nur-load, %s clients, %s s measured after %s s warm-up, one connection per request "
                 "(`Connection: close`), and in the *-keepalive rows clients that keep their connection (`--keep-alive`); "
                 "rows with an offered rate: an open loop at that rate (`--rate`, latency from when each request was due "
                 "if its client was behind), below what either path serves; "
                 "the client, nur-gateway (release, on the host) and the worker pod (release image) share the %s CPUs."
                 % (p.get("clients"), p.get("duration_s"), p.get("warmup_s"), m.get("nproc")))
    lines.append("")
    lines.append("| function | direct req/s | gateway req/s | gateway/direct (goal ≥ 0.8×) | direct p50 / p99 | gateway p50 / p99 | added p50 / p99 (goal p99 ≤ 1 ms) | errors direct / gateway |")
    lines.append("|---|---:|---:|---|---|---|---|---|")
    for r in loads:
        if "ratio" not in r:
            lines.append("| %s (round %d) | incomplete | | | | | | |" % (r["function"], r["round"]))
            continue
        name = row_name(r, loads)
        lines.append("| %s | %.0f | %.0f | %.2f× (%s) | %s / %s | %s / %s | %+.2f / %+.2f ms (%s) | %d / %d |" % (
            name, r["direct_rps"], r["gateway_rps"], r["ratio"], "met" if r["throughput_goal_met"] else "missed",
            fmt_ms(r["direct_p50_ms"]), fmt_ms(r["direct_p99_ms"]),
            fmt_ms(r["gateway_p50_ms"]), fmt_ms(r["gateway_p99_ms"]),
            r["added_p50_ms"], r["added_p99_ms"], "met" if r["p99_goal_met"] else "missed",
            r["direct_errors"], r["gateway_errors"]))
    lines.append("")
    lines.append("CPU time per request (warm-up included, over rps × (warm-up + duration)): nur-gateway's process "
                 "(/proc/PID/stat), the worker pod's cgroup (cpuacct); and this host's TIME_WAIT sockets to the pod "
                 "before → after each run.")
    lines.append("")
    lines.append("| function | gateway CPU / request | worker CPU / request direct / via gateway | TIME_WAIT to the pod: direct run | gateway run |")
    lines.append("|---|---:|---|---|---|")
    us = lambda v: "–" if v is None else "%.0f µs" % v
    tw = lambda v: "–" if not v else "%d → %d" % tuple(v)
    for r in loads:
        if "ratio" not in r:
            continue
        name = row_name(r, loads)
        lines.append("| %s | %s | %s / %s | %s | %s |" % (
            name, us(r["gateway_cpu_us_per_request"]), us(r["worker_cpu_us_per_request_direct"]),
            us(r["worker_cpu_us_per_request_gateway"]), tw(r["host_time_wait_to_pod_direct"]),
            tw(r["host_time_wait_to_pod_gateway"])))
    lines.append("")
    lines.append("Wake from zero (one request through the gateway, timed from its first byte to the end of "
                 "its answer, the function at zero: Ready/ScaledToZero, 0 replicas, no pod left) against the "
                 "same request to the same function once awake; p95 by nearest rank.")
    lines.append("")
    lines.append("| case | n | failed | min | p50 | p95 | max |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for w in wakes:
        lines.append("| %s | %d | %d | %s | %s | %s | %s |" % (
            w["case"], w["n"], w["failed"], fmt_ms(w["min_ms"], 1), fmt_ms(w["p50_ms"], 1),
            fmt_ms(w["p95_ms"], 1), fmt_ms(w["max_ms"], 1)))
    lines.append("")
    return "\n".join(lines)


def report(args):
    records = [json.loads(line) for line in open(args.records) if line.strip().startswith("{")]
    meta = json.load(open(args.meta)) if args.meta else {}
    loads, wakes = load_rows(records), wake_rows(records)
    os.makedirs(args.outdir, exist_ok=True)
    base = os.path.join(args.outdir, args.name)
    with open(base + ".json", "w") as f:
        json.dump(dict(meta, load=loads, wake=wakes, records=records), f, indent=1)
        f.write("\n")
    text = markdown(meta, loads, wakes)
    with open(base + ".md", "w") as f:
        f.write(text)
    sys.stdout.write("\n" + text + "\nwritten: %s.{json,md}\n" % base)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--addr", required=True)
    p.add_argument("--request", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--expect-prefix", default="HTTP/1.1 200 OK\\r\\n")
    p.add_argument("--expect-suffix", default="")
    p.add_argument("--timeout", type=float, default=90.0)
    p = sub.add_parser("serving-line")
    p.add_argument("--label", required=True)
    sub.add_parser("free-port")
    p = sub.add_parser("ready-zero")
    p.add_argument("file")
    p = sub.add_parser("report")
    p.add_argument("records")
    p.add_argument("outdir")
    p.add_argument("--name", required=True)
    p.add_argument("--meta")
    args = parser.parse_args()
    return {"probe": probe, "serving-line": serving_line, "free-port": free_port, "ready-zero": ready_zero, "report": report}[args.command](args) or 0


if __name__ == "__main__":
    sys.exit(main())
