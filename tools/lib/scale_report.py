#!/usr/bin/env python3
"""Writes weft's scaling report from weft_bench_scaling's JSON output (tools/scale runs it).

    python3 tools/lib/scale_report.py SCALING_JSON OUT_DIR [--commit SHA] [--load-before L]

Writes into OUT_DIR:
  results.json  every figure with its spread (median, stddev, min, max, cv of the real time over
                the repetitions), the machine (Google Benchmark's context), the commit, warnings
  report.md     per workload and worker count: time, ns per task, overhead per task, overhead
                against oneTBB, speedup over serial and over one worker, parallel efficiency,
                heap allocations per task; weft's fast path, its other forms (weft_group:
                TaskGroup, weft_vector: std::vector children) beside oneTBB and the serial floor;
                a warning when the machine was busy
  scaling.svg   speedup against workers (over the same runtime at one worker), one panel per
                workload, a line per runtime, the ideal line, labelled axes and a legend
  cost.svg      ns per task per workload and runtime, at one worker

Definitions (W workers, T the median real time of one run, S the serial time, N tasks):
  ns/task           T / N
  overhead/task     (W * T - S) / N: CPU time per task beyond the plain call, summed over the
                    workers (at W = 1 the familiar T - S); "vs tbb" is weft's over oneTBB's
  speedup           S / T (over serial) and T(1 worker) / T (over one worker)
  efficiency        speedup over serial / W
The SVGs are drawn here, with no plotting package. Exits 1 when a benchmark reported an error.
"""
import json
import math
import os
import sys
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale_table import load  # noqa: E402  (one reader of the benchmark JSON)

WORKLOAD_ORDER = ["fib", "skynet", "nqueens", "matmul"]
RUNTIME_ORDER = ["serial", "weft", "weft_group", "weft_vector", "tbb"]
RUNTIME_LABEL = {
    "serial": "serial",
    "weft": "weft (safe_gather)",
    "weft_group": "weft (TaskGroup)",
    "weft_vector": "weft (std::vector children)",
    "tbb": "oneTBB task_group",
}
COLORS = {
    "serial": "#777777",
    "weft": "#1f77b4",
    "weft_group": "#2ca02c",
    "weft_vector": "#9467bd",
    "tbb": "#d62728",
}
# A repetition spread (cv) above this, or a load average above half the CPUs, marks the run busy.
BUSY_CV = 0.10


def rank(x, order):
    return order.index(x) if x in order else len(order)


def ordered(items, order):
    return sorted(items, key=lambda x: (rank(x, order), x))


def label(runtime):
    return RUNTIME_LABEL.get(runtime, "weft (" + runtime[len("weft_"):] + ")")


def color(runtime):
    return COLORS.get(runtime, "#ff7f0e")


def build_rows(results):
    """One row per (workload, runtime, workers), with every derived figure."""
    rows = []
    for (workload, runtime, workers), (ms, c) in results.items():
        serial = results.get((workload, "serial", 0))
        serial_ms = serial[0] if serial else None
        tasks = c.get("tasks")
        if tasks is None:
            tasks = next((cc["tasks"] for (w, _, _), (_, cc) in results.items()
                          if w == workload and "tasks" in cc), None)
        w = workers if workers else 1
        row = {
            "workload": workload,
            "runtime": runtime,
            "workers": workers,
            "ms_median": ms,
            "ms_stddev": c.get("stddev_ms"),
            "ms_min": c.get("min_ms"),
            "ms_max": c.get("max_ms"),
            "cv": c.get("cv"),
            "repetitions": c.get("repetitions"),
            "tasks": tasks,
            "ns_per_task": ms * 1e6 / tasks if tasks else None,
            "overhead_ns_per_task": (w * ms - serial_ms) * 1e6 / tasks
            if tasks and serial_ms is not None and runtime != "serial" else None,
            "speedup_vs_serial": serial_ms / ms if serial_ms and ms else None,
            "heap_allocs_per_task": c.get("heap_allocs_per_task"),
            "steals_per_task": c.get("steals_per_task"),
        }
        one = results.get((workload, runtime, 1))
        row["speedup_vs_1_worker"] = one[0] / ms if one and ms and workers else None
        row["efficiency"] = (row["speedup_vs_serial"] / w
                             if row["speedup_vs_serial"] is not None and workers else None)
        rows.append(row)
    by_key = {(r["workload"], r["runtime"], r["workers"]): r for r in rows}
    for r in rows:
        tbb = by_key.get((r["workload"], "tbb", r["workers"]))
        mine, theirs = r["overhead_ns_per_task"], tbb and tbb["overhead_ns_per_task"]
        r["overhead_vs_tbb"] = (mine / theirs if r["runtime"].startswith("weft") and mine and theirs
                                and mine > 0 and theirs > 0 else None)
    rows.sort(key=lambda r: (rank(r["workload"], WORKLOAD_ORDER), r["workload"], r["workers"],
                             rank(r["runtime"], RUNTIME_ORDER), r["runtime"]))
    return rows


def warnings_for(context, rows, load_before):
    out = []
    cpus = context.get("num_cpus") or os.cpu_count() or 1
    loads = [x for x in [load_before] + list(context.get("load_avg", [])[:1]) if x is not None]
    if loads and max(loads) > 0.5 * cpus:
        out.append(f"the machine was busy: load average {max(loads):.2f} on {cpus} CPUs "
                   "(timings with several workers are unreliable)")
    noisy = [r for r in rows if r["cv"] is not None and r["cv"] > BUSY_CV]
    if noisy:
        names = ", ".join(f"{r['workload']}/{r['runtime']}/{r['workers']}" for r in noisy[:6])
        more = f" and {len(noisy) - 6} more" if len(noisy) > 6 else ""
        out.append(f"{len(noisy)} result(s) spread over {BUSY_CV:.0%} between repetitions "
                   f"({names}{more}): something else was running")
    return out


# --- formatting shared by report.md and its test ------------------------------------------------
def f2(x):
    return "-" if x is None else f"{x:.2f}"


def f3g(x):
    return "-" if x is None else f"{x:.3g}"


def pct(x):
    return "-" if x is None else f"{x * 100:.0f}%"


TABLE_HEADER = ["W", "runtime", "ms (median)", "± stddev", "ns/task", "overhead ns/task",
                "overhead vs tbb", "speedup vs serial", "speedup vs 1 worker", "efficiency",
                "heap allocs/task", "cv"]


def table_cells(r):
    return [str(r["workers"]) if r["workers"] else "-", r["runtime"], f2(r["ms_median"]),
            f2(r["ms_stddev"]), f2(r["ns_per_task"]), f2(r["overhead_ns_per_task"]),
            f2(r["overhead_vs_tbb"]), f2(r["speedup_vs_serial"]), f2(r["speedup_vs_1_worker"]),
            pct(r["efficiency"]), f3g(r["heap_allocs_per_task"]), pct(r["cv"])]


def write_markdown(path, context, commit, rows, warnings, errors):
    lines = ["# weft scaling report", ""]
    lines.append(f"- machine: {context.get('host_name', '?')}, {context.get('num_cpus', '?')} CPUs "
                 f"at {context.get('mhz_per_cpu', '?')} MHz, weft built Release with clang-19")
    lines.append(f"- commit: {commit or 'unknown'}")
    lines.append(f"- date: {context.get('date', '?')}")
    lines.append("- figures: median of the repetitions; overhead/task = (W x time - serial time) / "
                 "tasks; overhead vs tbb below 1 means weft is cheaper")
    lines.append("")
    for w in warnings:
        lines.append(f"> **Warning:** {w}")
        lines.append("")
    for e in errors:
        lines.append(f"> **Error:** {e}")
        lines.append("")
    workloads = ordered({r["workload"] for r in rows}, WORKLOAD_ORDER)
    for wl in workloads:
        mine = [r for r in rows if r["workload"] == wl]
        tasks = next((r["tasks"] for r in mine if r["tasks"]), None)
        lines.append(f"## {wl}" + (f" ({tasks:,.0f} tasks per run)" if tasks else ""))
        lines.append("")
        lines.append("| " + " | ".join(TABLE_HEADER) + " |")
        lines.append("|" + "|".join("---" for _ in TABLE_HEADER) + "|")
        for r in mine:
            lines.append("| " + " | ".join(table_cells(r)) + " |")
        lines.append("")
    lines.append("Plots: [speedup](scaling.svg), [cost per task](cost.svg); every figure with its "
                 "spread: [results.json](results.json).")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# --- SVG ------------------------------------------------------------------------------------------
def compact(v):
    """A short tick label: 1.5k, 40k, 2M."""
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def nice_ceiling(x):
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is >= x."""
    if x <= 0:
        return 1.0
    p = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * p >= x:
            return m * p
    return 10 * p


def svg_document(width, height, title, body):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">\n'
            f'<title>{escape(title)}</title>\n'
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>\n'
            f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="16">{escape(title)}</text>\n'
            + "".join(body) + "</svg>\n")


LEGEND_ENTRY_W, LEGEND_ROW_H = 210, 18


def legend(runtimes, x, y, width, extra=None):
    """Entries in rows that fit `width`; returns (parts, height used)."""
    out = ['<g class="legend">\n']
    entries = [(label(rt), color(rt), "") for rt in runtimes]
    if extra:
        entries.append(extra)
    per_row = max(1, int(width // LEGEND_ENTRY_W))
    for i, (text, col, dash) in enumerate(entries):
        ex = x + (i % per_row) * LEGEND_ENTRY_W
        ey = y + (i // per_row) * LEGEND_ROW_H
        out.append(f'<line x1="{ex}" y1="{ey}" x2="{ex + 24}" y2="{ey}" stroke="{col}" '
                   f'stroke-width="2.5"{dash}/>\n')
        out.append(f'<text x="{ex + 30}" y="{ey + 4}">{escape(text)}</text>\n')
    out.append("</g>\n")
    return out, math.ceil(len(entries) / per_row) * LEGEND_ROW_H


def axes(x0, y0, w, h, xticks, ymax, xlabel, ylabel, title):
    """A panel's frame: gridlines, ticks, axis labels and title; returns (parts, sx, sy)."""
    parts = [f'<g class="axes"><text x="{x0 + w / 2}" y="{y0 - 8}" text-anchor="middle" '
             f'font-size="13" font-weight="bold">{escape(title)}</text>\n']
    lo, hi = xticks[0], xticks[-1]

    def sx(v):
        return x0 + (w * (v - lo) / (hi - lo) if hi > lo else w / 2)

    def sy(v):
        return y0 + h - h * v / ymax

    for i in range(6):
        v = ymax * i / 5
        parts.append(f'<line x1="{x0}" y1="{sy(v):.1f}" x2="{x0 + w}" y2="{sy(v):.1f}" '
                     f'stroke="#e0e0e0"/>\n')
        parts.append(f'<text x="{x0 - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">'
                     f'{compact(v)}</text>\n')
    for t in xticks:
        parts.append(f'<line x1="{sx(t):.1f}" y1="{y0 + h}" x2="{sx(t):.1f}" y2="{y0 + h + 4}" '
                     f'stroke="black"/>\n')
        parts.append(f'<text x="{sx(t):.1f}" y="{y0 + h + 17}" text-anchor="middle">{t}</text>\n')
    parts.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="black"/>\n')
    parts.append(f'<text x="{x0 + w / 2}" y="{y0 + h + 34}" text-anchor="middle">'
                 f'{escape(xlabel)}</text>\n')
    parts.append(f'<text x="{x0 - 45}" y="{y0 + h / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 {x0 - 45} {y0 + h / 2})">{escape(ylabel)}</text>\n</g>\n')
    return parts, sx, sy


PANEL_W, PANEL_H, MARGIN_L, GAP_X, GAP_Y = 360, 240, 75, 70, 80


def panel_origin(i, columns, top):
    col, row = i % columns, i // columns
    return MARGIN_L + col * (PANEL_W + GAP_X), top + row * (PANEL_H + GAP_Y)


def layout(n_panels):
    """(columns, width, legend width) of a page of panels."""
    columns = min(2, max(1, n_panels))
    width = MARGIN_L + columns * (PANEL_W + GAP_X)
    return columns, width, width - MARGIN_L - 20


def scaling_svg(rows):
    workloads = ordered({r["workload"] for r in rows}, WORKLOAD_ORDER)
    runtimes = ordered({r["runtime"] for r in rows if r["workers"]}, RUNTIME_ORDER)
    counts = sorted({r["workers"] for r in rows if r["workers"]}) or [1]
    columns, width, legend_w = layout(len(workloads))
    body, legend_h = legend(runtimes, MARGIN_L, 46, legend_w,
                            ("ideal (speedup = workers)", "#000000", ' stroke-dasharray="5,4"'))
    top = 46 + legend_h + 30
    height = top + math.ceil(len(workloads) / columns) * (PANEL_H + GAP_Y)
    xticks = counts if len(counts) > 1 else [counts[0] - 1 or 0, counts[0]]
    for i, wl in enumerate(workloads):
        x0, y0 = panel_origin(i, columns, top)
        mine = [r for r in rows if r["workload"] == wl and r["workers"]]
        peak = max([r["speedup_vs_1_worker"] or 0 for r in mine] + [counts[-1]])
        ymax = nice_ceiling(peak * 1.05)
        parts, sx, sy = axes(x0, y0, PANEL_W, PANEL_H, xticks, ymax, "workers",
                             "speedup over 1 worker", wl)
        body += parts
        body.append(f'<g class="series ideal" data-workload="{escape(wl)}" data-runtime="ideal">'
                    f'<line x1="{sx(xticks[0]):.1f}" y1="{sy(max(xticks[0], 0)):.1f}" '
                    f'x2="{sx(xticks[-1]):.1f}" y2="{sy(xticks[-1]):.1f}" stroke="black" '
                    f'stroke-dasharray="5,4"/></g>\n')
        for rt in runtimes:
            pts = sorted((r["workers"], r["speedup_vs_1_worker"]) for r in mine
                         if r["runtime"] == rt and r["speedup_vs_1_worker"] is not None)
            if not pts:
                continue
            coords = " ".join(f"{sx(w):.1f},{sy(s):.1f}" for w, s in pts)
            body.append(f'<g class="series" data-workload="{escape(wl)}" data-runtime="{escape(rt)}">'
                        f'<polyline points="{coords}" fill="none" stroke="{color(rt)}" '
                        f'stroke-width="2.5"/>')
            for w, s in pts:
                body.append(f'<circle cx="{sx(w):.1f}" cy="{sy(s):.1f}" r="3.5" fill="{color(rt)}">'
                            f'<title>{escape(label(rt))}, {w} workers: {s:.2f}x</title></circle>')
            body.append("</g>\n")
    return svg_document(width, height, "weft scaling: speedup over one worker, per runtime", body)


SHORT_NAME = {"serial": "serial", "weft": "gather", "weft_group": "TaskGroup",
              "weft_vector": "vector", "tbb": "oneTBB"}


def cost_svg(rows):
    workloads = ordered({r["workload"] for r in rows}, WORKLOAD_ORDER)
    runtimes = ordered({r["runtime"] for r in rows}, RUNTIME_ORDER)
    columns, width, legend_w = layout(len(workloads))
    body, legend_h = legend(runtimes, MARGIN_L, 46, legend_w)
    top = 46 + legend_h + 30
    height = top + math.ceil(len(workloads) / columns) * (PANEL_H + GAP_Y)
    for i, wl in enumerate(workloads):
        x0, y0 = panel_origin(i, columns, top)
        bars = []
        for rt in runtimes:
            r = next((r for r in rows if r["workload"] == wl and r["runtime"] == rt
                      and r["workers"] in (0, 1)), None)
            if r is not None and r["ns_per_task"] is not None:
                bars.append((rt, r["ns_per_task"]))
        ymax = nice_ceiling(max([v for _, v in bars] + [1e-9]) * 1.1)
        parts, _, sy = axes(x0, y0, PANEL_W, PANEL_H, [0, 1], ymax, "", "ns per task (1 worker)",
                            wl)
        # A bar chart's x ticks are its bars' names, not axes()' numbers 0 and 1.
        parts = [p for p in parts if 'text-anchor="middle">0<' not in p and
                 'text-anchor="middle">1<' not in p and 'y2="' + str(y0 + PANEL_H + 4) not in p]
        body += parts
        slot = PANEL_W / max(1, len(bars))
        for j, (rt, v) in enumerate(bars):
            bx = x0 + j * slot + slot * 0.15
            bw = slot * 0.7
            body.append(f'<g class="series" data-workload="{escape(wl)}" data-runtime="{escape(rt)}">'
                        f'<rect x="{bx:.1f}" y="{sy(v):.1f}" width="{bw:.1f}" '
                        f'height="{y0 + PANEL_H - sy(v):.1f}" fill="{color(rt)}">'
                        f'<title>{escape(label(rt))}: {v:.4g} ns per task</title></rect>'
                        f'<text x="{bx + bw / 2:.1f}" y="{sy(v) - 4:.1f}" text-anchor="middle" '
                        f'font-size="11">{compact(float(f"{v:.3g}"))}</text>'
                        f'<text x="{bx + bw / 2:.1f}" y="{y0 + PANEL_H + 16}" text-anchor="middle" '
                        f'font-size="11">{escape(SHORT_NAME.get(rt, rt))}</text></g>\n')
    return svg_document(width, height, "weft cost: ns per task at one worker", body)


def main(argv):
    args = argv[1:]
    commit, load_before = None, None
    positional = []
    while args:
        a = args.pop(0)
        if a == "--commit":
            commit = args.pop(0)
        elif a == "--load-before":
            load_before = float(args.pop(0))
        else:
            positional.append(a)
    if len(positional) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source, out_dir = positional
    context, results, errors = load(source)
    rows = build_rows(results)
    warnings = warnings_for(context, rows, load_before)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"machine": context, "commit": commit, "warnings": warnings, "errors": errors,
                   "results": rows}, f, indent=1)
    write_markdown(os.path.join(out_dir, "report.md"), context, commit, rows, warnings, errors)
    with open(os.path.join(out_dir, "scaling.svg"), "w") as f:
        f.write(scaling_svg(rows))
    with open(os.path.join(out_dir, "cost.svg"), "w") as f:
        f.write(cost_svg(rows))
    for w in warnings:
        print(f"scale: warning: {w}", file=sys.stderr)
    print(f"scale: report in {out_dir}/ (report.md, results.json, scaling.svg, cost.svg)",
          file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
