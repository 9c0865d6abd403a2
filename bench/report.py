#!/usr/bin/env python3
"""Turns the numbers of bench/run.sh into records, a table and a plot.

Standard library only. Subcommands:
  wrk LABEL FILE          wrk's text output -> one JSON record
  criterion DIR           target/criterion/<group> -> one JSON record per bench
  runtimes DIR            target/criterion/runtimes -> Nur beside wasmtime, a table
  report RECORDS OUTDIR   records (JSON lines) -> table on stdout,
                          OUTDIR/<date>.json, OUTDIR/<date>.md, OUTDIR/latency.svg
"""

import argparse
import datetime
import glob
import json
import math
import os
import platform
import re
import sys

UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


def wrk(label, path):
    text = open(path).read()
    percentiles = []
    for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        percentiles.append([float(pct), round(float(value) * UNITS[unit])])
    by_pct = dict((p, v) for p, v in percentiles)
    requests = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors += int(non2xx.group(1)) if non2xx else 0
    return {
        "label": label,
        "tool": "wrk",
        "requests": int(requests.group(1)) if requests else 0,
        "rps": float(rps.group(1)) if rps else 0.0,
        "errors": errors,
        "latency_us": {"p50": by_pct.get(50.0), "p90": by_pct.get(90.0), "p99": by_pct.get(99.0), "p99_9": None},
        "percentiles_us": percentiles,
    }


def criterion(directory):
    out = []
    for estimates in sorted(glob.glob(os.path.join(directory, "*", "new", "estimates.json"))):
        new = os.path.dirname(estimates)
        bench = json.load(open(os.path.join(new, "benchmark.json")))
        est = json.load(open(estimates))
        median = est["median"]
        out.append({
            "label": "instance/" + bench.get("function_id", os.path.basename(os.path.dirname(new))),
            "tool": "criterion",
            "median_us": median["point_estimate"] / 1e3,
            "median_ci_us": [median["confidence_interval"]["lower_bound"] / 1e3,
                             median["confidence_interval"]["upper_bound"] / 1e3],
            "mean_us": est["mean"]["point_estimate"] / 1e3,
        })
    return out


def runtimes(directory):
    """The table of benches/runtimes.rs: per module, Nur and wasmtime-pooling."""
    by_module = {}
    for record in criterion(directory):
        module, runtime = record["label"].split("/")[1:3]
        by_module.setdefault(module, {})[runtime] = record
    rows = ["| module | Nur µs (median) | wasmtime pooling µs | Nur ÷ wasmtime |",
            "|---|---|---|---|"]
    for module, runs in by_module.items():
        nur, theirs = runs.get("nur"), runs.get("wasmtime-pooling")
        if not (nur and theirs):
            continue
        rows.append("| %s | %.1f | %.1f | %.2f× |" % (
            module, nur["median_us"], theirs["median_us"], nur["median_us"] / theirs["median_us"]))
    m = machine()
    head = ("One connection's wasm cost (instantiate, one chunk in, the answer out, drop), %s; "
            "%s cores (%s), %s GiB, kernel %s, load average after %s\n\n") % (
        m["date"], m["nproc"], m["cpu"], m["memory_gib"], m["kernel"], open("/proc/loadavg").read().split()[0])
    return head + "\n".join(rows)


def machine():
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def fmt_us(value):
    if value is None:
        return "–"
    if value >= 10000:
        return "%.1f ms" % (value / 1000)
    if value >= 1000:
        return "%.2f ms" % (value / 1000)
    return "%d µs" % value


def lat(record):
    if not record or "latency_us" not in record:
        return "–"
    l = record["latency_us"]
    return " / ".join(fmt_us(l.get(k)) for k in ("p50", "p99", "p99_9"))


def errors(record):
    if not record:
        return "–"
    if "errors" in record:
        return str(record["errors"])
    if "failed" in record:
        return str(record["failed"] + record.get("requests_failed", 0))
    return "–"


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def rows(records):
    """Builds the table rows: (scenario, metric, nur, native, ratio, goal, lat nur, lat native, errors)."""
    by_label = {r["label"]: r for r in records}
    scenarios = []
    for r in records:
        scenario = r["label"].rsplit("/", 1)[0]
        if r.get("tool") != "criterion" and scenario not in scenarios:
            scenarios.append(scenario)
    out = []
    for scenario in scenarios:
        nur, native = by_label.get(scenario + "/nur"), by_label.get(scenario + "/native")
        if scenario.startswith("idle") or scenario.startswith("many"):
            get = lambda r: r["bytes_per_conn"] / 1024 if r and "bytes_per_conn" in r else None
            n, b = get(nur), get(native)
            def held(r):
                if not r:
                    return "–"
                if "error" in r:
                    return "%s (%s/%s open)" % (r["error"], r.get("open", "?"), r.get("conns", "?"))
                text = "%s/%s held, threads %s" % (r.get("open", "?"), r.get("conns", "?"), r.get("threads_held", "?"))
                if "requests" in r:
                    text += "; then %s/%s answered in %.1fs" % (r["requests_ok"], r["requests"], r["requests_s"])
                return text
            goal = ""
            if n is not None:
                goal = "≤ 64 KiB: %s" % ("met" if n <= 64 else "missed")
            elif nur and "error" in nur:
                goal = "≤ 64 KiB: missed (worker died)"
            out.append((scenario, "RSS KiB/conn",
                        "%.1f" % n if n is not None else "–", "%.1f" % b if b is not None else "–",
                        "%.2f×" % ratio(n, b) if ratio(n, b) else "–", goal,
                        held(nur), held(native), "%s / %s" % (errors(nur), errors(native))))
            continue
        n = nur["rps"] if nur else None
        b = native["rps"] if native else None
        r = ratio(n, b)
        goal = ""
        if scenario == "echo" and r is not None:
            p99 = ratio(nur["latency_us"]["p99"], native["latency_us"]["p99"])
            goal = "≥ 0.8×: %s; p99 %.1f× (≤ 2×: %s)" % (
                "met" if r >= 0.8 else "missed", p99, "met" if p99 <= 2 else "missed")
        out.append((scenario, "req/s",
                    "%.0f" % n if n is not None else "–", "%.0f" % b if b is not None else "–",
                    "%.2f×" % r if r is not None else "–", goal,
                    lat(nur), lat(native), "%s / %s" % (errors(nur), errors(native))))
    for r in records:
        if r.get("tool") == "criterion":
            goal = ""
            if r["label"] == "instance/echo/instantiate+feed+drop":
                goal = "≤ 20 µs: %s" % ("met" if r["median_us"] <= 20 else "missed")
            out.append((r["label"], "median µs", "%.1f" % r["median_us"], "–", "–", goal,
                        "CI %.1f–%.1f µs" % tuple(r["median_ci_us"]), "–", "–"))
    return out


HEADER = ("scenario", "metric", "Nur", "native", "Nur/native", "goal",
          "Nur p50 / p99 / p99.9", "native p50 / p99 / p99.9", "errors Nur / native")


def markdown(table):
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    return "\n".join(lines) + "\n"


def text_table(table):
    widths = [max(len(str(row[i])) for row in [HEADER] + table) for i in range(len(HEADER))]
    fmt = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
    return "\n".join([fmt(HEADER), fmt(tuple("-" * w for w in widths))] + [fmt(r) for r in table]) + "\n"


COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def svg(records, title):
    """Latency by percentile, log-log (x: 1/(1-p)), Nur solid, native dashed."""
    series = [r for r in records if r.get("percentiles_us") and r.get("tool") != "wrk"]
    w, h, left, right, top, bottom = 760, 440, 70, 200, 40, 50
    pw, ph = w - left - right, h - top - bottom
    pcts = [50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99]
    xs = {p: math.log10(1 / (1 - p / 100)) for p in pcts}
    xmax = max(xs.values())
    values = [v for r in series for p, v in r["percentiles_us"] if p in xs and v > 0]
    if not values:
        return None
    ylo = 10 ** math.floor(math.log10(min(values)))
    yhi = 10 ** math.ceil(math.log10(max(values)))
    X = lambda p: left + pw * xs[p] / xmax
    Y = lambda v: top + ph * (1 - (math.log10(max(v, ylo)) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)))
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (w, h),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="22" font-size="14">%s</text>' % (left, title)]
    decade = ylo
    while decade <= yhi:
        y = Y(decade)
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (left, left + pw, y, y))
        label = "%g µs" % decade if decade < 1000 else "%g ms" % (decade / 1000) if decade < 1e6 else "%g s" % (decade / 1e6)
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (left - 6, y + 4, label))
        decade *= 10
    for p in pcts:
        x = X(p)
        out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>' % (x, x, top, top + ph))
        if p in (99.5, 99.95):
            continue  # too close to their neighbours to label
        out.append('<text x="%.1f" y="%d" text-anchor="middle">p%s</text>' % (x, top + ph + 16, ("%g" % p)))
    out.append('<text x="%d" y="%d" text-anchor="middle">percentile</text>' % (left + pw / 2, h - 10))
    out.append('<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">latency, connect to EOF</text>' % (top + ph / 2, top + ph / 2))
    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>' % (left, top, pw, ph))
    scenarios = []
    for r in series:
        s = r["label"].rsplit("/", 1)[0]
        if s not in scenarios:
            scenarios.append(s)
    for i, r in enumerate(series):
        scenario, server = r["label"].rsplit("/", 1)
        color = COLORS[scenarios.index(scenario) % len(COLORS)]
        dash = "" if server == "nur" else ' stroke-dasharray="6 4"'
        points = " ".join("%.1f,%.1f" % (X(p), Y(v)) for p, v in r["percentiles_us"] if p in xs)
        out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>' % (points, color, dash))
        ly = top + 14 + 18 * i
        out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>' % (
            left + pw + 12, left + pw + 40, ly - 4, ly - 4, color, dash))
        out.append('<text x="%d" y="%d">%s</text>' % (left + pw + 46, ly, r["label"]))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def report(args):
    records = [json.loads(line) for line in open(args.records) if line.strip()]
    info = machine()
    info["load_before"] = args.load_before
    info["load_after"] = args.load_after
    params = {"clients": args.clients, "duration_s": args.duration, "warmup_s": args.warmup,
              "worker_log": args.worker_log, "one_connection_per_request": True,
              "server_and_load_share_cpus": True}
    table = rows(records)
    date = args.name or datetime.date.today().isoformat()
    os.makedirs(args.outdir, exist_ok=True)
    with open(os.path.join(args.outdir, date + ".json"), "w") as f:
        json.dump({"machine": info, "parameters": params, "records": records}, f, indent=1)
        f.write("\n")
    head = ("Machine: %(nproc)s CPUs (%(cpu)s), %(memory_gib)s GiB, Linux %(kernel)s, %(date)s; "
            "load average before %(load_before)s, after %(load_after)s.\n" % info)
    head += ("Parameters: %s clients, %ss measured after %ss warm-up, one connection per request, "
             "load generator and server on the same %s CPUs, worker log level %s.\n\n"
             % (args.clients, args.duration, args.warmup, info["nproc"], args.worker_log))
    with open(os.path.join(args.outdir, date + ".md"), "w") as f:
        f.write("# Nur vs native, %s\n\n" % info["date"] + head + markdown(table))
    plot = svg(records, "Latency by percentile, %s clients (Nur solid, native dashed)" % args.clients)
    if plot:
        with open(os.path.join(args.outdir, (args.name + "-" if args.name else "") + "latency.svg"), "w") as f:
            f.write(plot)
    sys.stdout.write("\n" + head + text_table(table))
    sys.stdout.write("\nwritten: %s/%s.{json,md}, %s/%slatency.svg\n"
                     % (args.outdir, date, args.outdir, (args.name + "-" if args.name else "")))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("wrk")
    p.add_argument("label")
    p.add_argument("file")
    p = sub.add_parser("criterion")
    p.add_argument("directory")
    p = sub.add_parser("runtimes")
    p.add_argument("directory")
    p = sub.add_parser("report")
    p.add_argument("records")
    p.add_argument("outdir")
    for flag in ("--clients", "--duration", "--warmup", "--load-before", "--load-after", "--worker-log"):
        p.add_argument(flag, default="?")
    p.add_argument("--name", default="", help="results file name instead of the date")
    args = parser.parse_args()
    if args.command == "wrk":
        print(json.dumps(wrk(args.label, args.file)))
    elif args.command == "criterion":
        for record in criterion(args.directory):
            print(json.dumps(record))
    elif args.command == "runtimes":
        print(runtimes(args.directory))
    else:
        report(args)


if __name__ == "__main__":
    main()
