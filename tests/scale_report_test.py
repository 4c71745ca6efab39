#!/usr/bin/env python3
"""tools/lib/scale_report.py: the four files of tools/scale's report, checked on a recorded run
(tests/data/scaling_sample.json: weft_bench_scaling with 1 and 2 workers, 2 repetitions).

    python3 tests/scale_report_test.py
"""
import json
import os
import re
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "lib"))
import scale_report  # noqa: E402

SAMPLE = os.path.join(HERE, "data", "scaling_sample.json")
SVG = "{http://www.w3.org/2000/svg}"


def series(svg_path):
    """(workload, runtime) of every data series drawn in an SVG."""
    root = ET.parse(svg_path).getroot()
    return {(g.get("data-workload"), g.get("data-runtime"))
            for g in root.iter(SVG + "g") if "series" in (g.get("class") or "").split()}


def texts(svg_path):
    return [t.text for t in ET.parse(svg_path).getroot().iter(SVG + "text") if t.text]


def markdown_tables(path):
    """{workload: {(W, runtime): [cells]}} from report.md."""
    tables, current = {}, None
    with open(path) as f:
        for line in f:
            m = re.match(r"^## (\S+)", line)
            if m:
                current = tables.setdefault(m.group(1), {})
            elif current is not None and line.startswith("| ") and not line.startswith("| W |"):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                current[(cells[0], cells[1])] = cells
    return tables


class ScaleReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.out = cls.tmp.name
        status = scale_report.main(["scale_report.py", SAMPLE, cls.out, "--commit", "0123abc"])
        cls.status = status
        with open(os.path.join(cls.out, "results.json")) as f:
            cls.results = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_writes_the_four_files_and_succeeds(self):
        self.assertEqual(self.status, 0)
        for name in ("results.json", "report.md", "scaling.svg", "cost.svg"):
            path = os.path.join(self.out, name)
            self.assertTrue(os.path.isfile(path), name)
            self.assertGreater(os.path.getsize(path), 0, name)

    def test_results_json_names_the_machine_and_commit_and_gives_every_spread(self):
        self.assertEqual(self.results["commit"], "0123abc")
        self.assertEqual(self.results["machine"]["num_cpus"], 2)
        rows = self.results["results"]
        self.assertEqual(len({(r["workload"], r["runtime"], r["workers"]) for r in rows}), len(rows))
        for r in rows:
            for key in ("ms_median", "ms_stddev", "ms_min", "ms_max", "cv", "repetitions"):
                self.assertIsNotNone(r[key], f"{r['workload']}/{r['runtime']}/{r['workers']} {key}")
            self.assertLessEqual(r["ms_min"], r["ms_max"])
            self.assertEqual(r["repetitions"], 2)

    def test_every_figure_of_the_json_is_the_one_in_the_table(self):
        tables = markdown_tables(os.path.join(self.out, "report.md"))
        fields = {2: "ms_median", 3: "ms_stddev", 4: "ns_per_task", 5: "overhead_ns_per_task",
                  6: "overhead_vs_tbb", 7: "speedup_vs_serial", 8: "speedup_vs_1_worker"}
        for r in self.results["results"]:
            w = str(r["workers"]) if r["workers"] else "-"
            cells = tables[r["workload"]][(w, r["runtime"])]
            for column, key in fields.items():
                if r[key] is None:
                    self.assertEqual(cells[column], "-", key)
                else:
                    self.assertAlmostEqual(float(cells[column]), r[key], delta=0.0051,
                                           msg=f"{r['workload']}/{r['runtime']}/{w} {key}")
            if r["efficiency"] is not None:
                self.assertEqual(cells[9], f"{r['efficiency'] * 100:.0f}%")

    def test_derived_figures_follow_their_definitions(self):
        rows = {(r["workload"], r["runtime"], r["workers"]): r for r in self.results["results"]}
        fib_serial = rows[("fib", "serial", 0)]
        weft2 = rows[("fib", "weft", 2)]
        self.assertAlmostEqual(weft2["overhead_ns_per_task"],
                               (2 * weft2["ms_median"] - fib_serial["ms_median"]) * 1e6 / weft2["tasks"])
        self.assertAlmostEqual(weft2["speedup_vs_1_worker"],
                               rows[("fib", "weft", 1)]["ms_median"] / weft2["ms_median"])
        self.assertAlmostEqual(weft2["efficiency"], weft2["speedup_vs_serial"] / 2)
        tbb2 = rows[("fib", "tbb", 2)]
        self.assertAlmostEqual(weft2["overhead_vs_tbb"],
                               weft2["overhead_ns_per_task"] / tbb2["overhead_ns_per_task"])

    def test_the_svgs_are_well_formed_and_draw_every_series(self):
        rows = self.results["results"]
        for name in ("scaling.svg", "cost.svg"):
            ET.parse(os.path.join(self.out, name))  # raises on malformed XML
        parallel = {(r["workload"], r["runtime"]) for r in rows if r["workers"]}
        drawn = series(os.path.join(self.out, "scaling.svg"))
        self.assertTrue(parallel <= drawn, parallel - drawn)
        for wl in {r["workload"] for r in rows}:
            self.assertIn((wl, "ideal"), drawn)
        one_worker = {(r["workload"], r["runtime"]) for r in rows if r["workers"] in (0, 1)}
        self.assertEqual(series(os.path.join(self.out, "cost.svg")), one_worker)

    def test_the_svgs_label_their_axes_and_name_every_runtime_in_the_legend(self):
        for name, ylabel in (("scaling.svg", "speedup over 1 worker"),
                             ("cost.svg", "ns per task (1 worker)")):
            words = texts(os.path.join(self.out, name))
            self.assertIn(ylabel, words, name)
            for runtime in {r["runtime"] for r in self.results["results"]}:
                if name == "scaling.svg" and runtime == "serial":
                    continue
                self.assertIn(scale_report.label(runtime), words, f"{name}: {runtime}")
        self.assertIn("workers", texts(os.path.join(self.out, "scaling.svg")))

    def test_a_busy_machine_is_reported_as_a_warning(self):
        # The recorded run was taken while builds ran: its load average and spreads say so.
        self.assertTrue(any("busy" in w for w in self.results["warnings"]))
        with open(os.path.join(self.out, "report.md")) as f:
            self.assertIn("**Warning:**", f.read())

    def test_a_benchmark_error_fails_the_report(self):
        with open(SAMPLE) as f:
            data = json.load(f)
        data["benchmarks"].append({"name": "fib/weft/workers:3/real_time", "run_name":
                                   "fib/weft/workers:3/real_time", "run_type": "iteration",
                                   "error_occurred": True, "error_message": "weft: wrong result",
                                   "real_time": 0, "time_unit": "ms"})
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "bad.json")
            with open(source, "w") as f:
                json.dump(data, f)
            self.assertEqual(scale_report.main(["scale_report.py", source, tmp]), 1)
            with open(os.path.join(tmp, "results.json")) as f:
                self.assertTrue(json.load(f)["errors"])


if __name__ == "__main__":
    unittest.main()
