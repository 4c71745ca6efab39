#!/usr/bin/env python3
"""Prints the weft / oneTBB / serial comparison table from weft_bench_scaling's JSON output.

    python3 tools/lib/scale_table.py build/scale/scaling.json

Expects benchmark names <workload>/serial, <workload>/weft/workers:W, <workload>/tbb/workers:W
(as weft_bench_scaling registers them) with counters "tasks", "ns_per_task" and, for weft,
"heap_allocs_per_task". With repetitions it uses the median aggregates; without them, the mean
of the runs. Exits 1 if any benchmark reported an error (a wrong result), 0 otherwise.

Columns, per workload and worker count W:
  weft/tbb/serial ms   real time of one run (serial does not depend on W)
  ns/task              that time divided by the number of tasks
  ovh/task             (W * time - serial time) / tasks: what each task costs beyond the plain
                       call in CPU time, summed over the W workers (the same definition as
                       tools/lib/scale_report.py)
  ovh weft/tbb         ratio of the two overheads (below 1: weft is cheaper); "-" unless both
                       are positive (coarse tasks at W > 1 run faster than serial code)
  speedup              time with 1 worker / time with W workers
  heap/task            weft frames from ::operator new per task in the timed runs (0 in
                       steady state)
  cv%                  spread of the repetitions (stddev / mean of the real time): a large one
                       means the machine was busy with something else
"""
import json
import re
import sys
from collections import defaultdict

TIME_SCALE_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
# <workload>/<runtime>[/workers:W]; runtimes: serial, weft, tbb, and weft_<variant> (another way of
# writing the workload with weft, e.g. fib/weft_group: fib through TaskGroup).
NAME_RE = re.compile(
    r"^(?P<workload>[^/]+)/(?P<impl>serial|weft|tbb|weft_\w+)(?:/workers:(?P<workers>\d+))?$")


def load(path):
    with open(path) as f:
        data = json.load(f)
    runs = data.get("benchmarks", [])
    have_median = any(r.get("aggregate_name") == "median" for r in runs)
    samples = defaultdict(list)  # (workload, impl, workers) -> [(ms, counters)]
    errors = []
    for r in runs:
        name = r.get("run_name", r["name"])
        name = re.sub(r"/(real_time|manual_time)$", "", name)
        if r.get("error_occurred"):
            errors.append(f"{name}: {r.get('error_message', 'error')}")
            continue
        if have_median:
            if r.get("run_type") != "aggregate" or r.get("aggregate_name") != "median":
                continue
        elif r.get("run_type") == "aggregate":
            continue
        m = NAME_RE.match(name)
        if not m:
            continue
        workers = int(m["workers"]) if m["workers"] else 0
        ms = r["real_time"] * TIME_SCALE_MS[r.get("time_unit", "ns")]
        samples[(m["workload"], m["impl"], workers)].append((ms, r))
    # The spread of the real time over the repetitions: the cv and stddev aggregates where
    # reported, the extremes and count of the individual runs.
    cvs, stddevs, singles = {}, {}, defaultdict(list)
    for r in runs:
        name = re.sub(r"/(real_time|manual_time)$", "", r.get("run_name", r["name"]))
        m = NAME_RE.match(name)
        if not m or r.get("error_occurred"):
            continue
        key = (m["workload"], m["impl"], int(m["workers"]) if m["workers"] else 0)
        scale = TIME_SCALE_MS[r.get("time_unit", "ns")]
        if r.get("run_type") == "aggregate" and r.get("aggregate_name") == "cv":
            cvs[key] = r["real_time"]
        elif r.get("run_type") == "aggregate" and r.get("aggregate_name") == "stddev":
            stddevs[key] = r["real_time"] * scale
        elif r.get("run_type") != "aggregate":
            singles[key].append(r["real_time"] * scale)
    results = {}
    for key, vals in samples.items():
        ms = sum(v[0] for v in vals) / len(vals)
        counters = {}
        for k in ("tasks", "ns_per_task", "heap_allocs_per_task", "steals_per_task"):
            xs = [v[1][k] for v in vals if k in v[1]]
            if xs:
                counters[k] = sum(xs) / len(xs)
        if key in cvs:
            counters["cv"] = cvs[key]
        if key in stddevs:
            counters["stddev_ms"] = stddevs[key]
        if singles.get(key):
            counters["min_ms"] = min(singles[key])
            counters["max_ms"] = max(singles[key])
            counters["repetitions"] = len(singles[key])
        results[key] = (ms, counters)
    return data.get("context", {}), results, errors


def fmt(x, spec):
    if x is None:
        width = re.match(r"\d*", spec).group(0)
        return "-".rjust(int(width) if width else 1)
    return format(x, spec)


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    context, results, errors = load(argv[1])
    workloads = []
    for (w, _, _) in results:
        if w not in workloads:
            workloads.append(w)
    order = ["fib", "skynet", "nqueens", "matmul"]
    workloads.sort(key=lambda w: (order.index(w) if w in order else len(order), w))

    print(f"weft vs oneTBB vs serial -- {context.get('num_cpus', '?')} CPUs, "
          f"{context.get('date', '')}, median of repetitions where available")
    header = (f"{'workload':<8} {'W':>2} | {'weft ms':>8} {'tbb ms':>8} {'serial ms':>9} | "
              f"{'ns/task weft':>12} {'tbb':>7} {'serial':>7} | {'ovh/task weft':>13} {'tbb':>7} "
              f"{'weft/tbb':>8} | {'speedup weft':>12} {'tbb':>5} | {'heap/task':>9} | {'cv% weft':>8} {'tbb':>4}")
    print(header)
    print("-" * len(header))
    for wl in workloads:
        serial = results.get((wl, "serial", 0))
        serial_ms = serial[0] if serial else None
        tasks = None
        for (w, _, _), (_, c) in results.items():
            if w == wl and "tasks" in c:
                tasks = c["tasks"]
        counts = sorted({n for (w, i, n) in results if w == wl and i in ("weft", "tbb")})
        if not counts and serial:
            counts = [0]
        for n in counts:
            weft = results.get((wl, "weft", n))
            tbb = results.get((wl, "tbb", n))
            weft_ms = weft[0] if weft else None
            tbb_ms = tbb[0] if tbb else None

            def per_task(ms):
                return ms * 1e6 / tasks if ms is not None and tasks else None

            def overhead(ms):
                if ms is None or serial_ms is None or not tasks:
                    return None
                return (max(n, 1) * ms - serial_ms) * 1e6 / tasks

            def speedup(impl, ms):
                one = results.get((wl, impl, 1))
                return one[0] / ms if one and ms else None

            weft_ovh, tbb_ovh = overhead(weft_ms), overhead(tbb_ms)
            # Only meaningful when both versions cost more than the serial code.
            ratio = (weft_ovh / tbb_ovh
                     if weft_ovh is not None and tbb_ovh is not None and weft_ovh > 0 and tbb_ovh > 0
                     else None)
            heap = weft[1].get("heap_allocs_per_task") if weft else None

            def cv(res):
                return res[1]["cv"] * 100 if res and "cv" in res[1] else None
            print(f"{wl:<8} {n if n else '-':>2} | {fmt(weft_ms, '8.2f')} {fmt(tbb_ms, '8.2f')} "
                  f"{fmt(serial_ms, '9.2f')} | {fmt(per_task(weft_ms), '12.2f')} "
                  f"{fmt(per_task(tbb_ms), '7.2f')} {fmt(per_task(serial_ms), '7.2f')} | "
                  f"{fmt(weft_ovh, '13.2f')} {fmt(tbb_ovh, '7.2f')} {fmt(ratio, '8.2f')} | "
                  f"{fmt(speedup('weft', weft_ms), '12.2f')} {fmt(speedup('tbb', tbb_ms), '5.2f')} | "
                  f"{fmt(heap, '9.2g')} | {fmt(cv(weft), '8.0f')} {fmt(cv(tbb), '4.0f')}")
        if tasks:
            print(f"{'':<8}    ({tasks:,.0f} tasks per run)")
    for e in errors:
        print(f"ERROR {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
