#!/usr/bin/env python3
"""Turns the JSON results of scripts/bench.sh into a table (stdout), docs/BENCHMARKS.md and
docs/benchmarks.png. Every comparison is a ratio of two measurements made in the same run."""
import argparse
import datetime
import glob
import json
import os
import platform
import statistics
import subprocess


def load(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return json.loads(text) if text else None
    except (OSError, json.JSONDecodeError):
        return None


# The engine's default HNSW efSearch (HnswParams::default, matcher --hnsw-ef).
DEFAULT_EF = 200

def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def f(x, nd=2, unit=""):
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{nd}f}{unit}"
    return f"{x}{unit}"


def pct(x, nd=1):
    return "n/a" if x is None else f"{100 * x:.{nd}f}%"


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


class Report:
    def __init__(self, a):
        self.a = a
        self.r = a.results
        self.md = []
        self.targets = []  # (target, measured, met)
        self.cpu_ratio = {}
        self.scaling_cpu = None
        self.plot = {}

    def j(self, name):
        return load(os.path.join(self.r, name))

    def out(self, *lines):
        self.md.extend(lines)

    def table(self, head, rows):
        self.out("| " + " | ".join(head) + " |", "|" + "---|" * len(head))
        for row in rows:
            self.out("| " + " | ".join(str(c) for c in row) + " |")
        self.out("")

    def target(self, what, measured, met):
        self.targets.append((what, measured, "met" if met else ("**missed**" if met is not None else "not measured")))

    # ---- sections ----------------------------------------------------------------------------
    def throughput(self):
        reps = sorted(glob.glob(os.path.join(self.r, "thr_lk_r*.json")))
        if not reps:
            return
        rows, ratios = [], {k: [] for k in ("w1_u1", "w1_u0", "w2_w1", "w2_u1p2", "w2_u0p2", "m1_u1", "m1_u0", "m1_w1")}
        mirror_cpu = []
        series = {k: [] for k in ("w1", "w2", "u1p1", "u1p2", "u0p1", "u0p2")}
        for path in reps:
            r = path.rsplit("_r", 1)[1].split(".")[0]
            lk = {x["workers"]: x["photos_per_second"] for x in self.j(os.path.basename(path))["results"]}
            peer = {}
            for up in (1, 0):
                for p in (1, 2):
                    d = self.j(f"thr_peer_u{up}_p{p}_r{r}.json")
                    peer[(up, p)] = d.get("images_per_second") if d else None
            vals = {"w1": lk.get(1), "w2": lk.get(2), "u1p1": peer[(1, 1)], "u1p2": peer[(1, 2)],
                    "u0p1": peer[(0, 1)], "u0p2": peer[(0, 2)]}
            for k, v in vals.items():
                series[k].append(v)
            div = lambda x, y: x / y if x and y else None  # noqa: E731
            ratios["w1_u1"].append(div(vals["w1"], vals["u1p1"]))
            ratios["w1_u0"].append(div(vals["w1"], vals["u0p1"]))
            ratios["w2_w1"].append(div(vals["w2"], vals["w1"]))
            ratios["w2_u1p2"].append(div(vals["w2"], vals["u1p2"]))
            ratios["w2_u0p2"].append(div(vals["w2"], vals["u0p2"]))
            mir = self.j(os.path.basename(path)).get("mirror_1_worker") or {}
            ratios["m1_u1"].append(div(mir.get("photos_per_second"), vals["u1p1"]))
            ratios["m1_u0"].append(div(mir.get("photos_per_second"), vals["u0p1"]))
            ratios["m1_w1"].append(div(mir.get("photos_per_second"), vals["w1"]))
            if mir.get("cpu_ms_per_photo"):
                mirror_cpu.append(mir["cpu_ms_per_photo"])
            rows.append([r] + [f(vals[k]) for k in series])
        m = {k: med(v) for k, v in series.items()}
        mr = {k: med(v) for k, v in ratios.items()}
        self.plot["throughput"] = m
        first = self.j(os.path.basename(reps[0]))
        self.out("## 1. Photos per second on tg1280", "",
                 f"{first['photos']} photos (≤1280 px), {first['passes']} pass(es) per repetition, gallery of "
                 f"{first['gallery_embeddings']} embeddings ({first['index']} search). lookalike: the engine in process "
                 "(read file, decode, detect, landmarks, embed, top-1 search) on N worker threads. Peer: "
                 "`seed_pipeline.py match` with N processes (models loaded before its clock starts). "
                 "Repetitions interleave all six configurations; ratios are per repetition, then the median.", "")
        self.table(["rep", "lookalike 1 worker", "lookalike 2 workers", "peer up1 ×1", "peer up1 ×2", "peer up0 ×1",
                    "peer up0 ×2"], rows + [["**median**"] + [f"**{f(m[k])}**" for k in series]])
        self.table(["ratio (median of per-rep ratios)", "value", "target"], [
            ["lookalike 1 worker / peer --upsample 1 (1 process)", f(mr["w1_u1"], 1, "x"), "≥ 10x"],
            ["lookalike 1 worker / peer --upsample 0 (1 process)", f(mr["w1_u0"], 2, "x"), "≥ 2x"],
            ["lookalike 2 workers / 1 worker", f(mr["w2_w1"], 2, "x"), "≥ 1.7x"],
            ["lookalike 2 workers / peer --upsample 1 (2 processes)", f(mr["w2_u1p2"], 1, "x"), ""],
            ["lookalike 2 workers / peer --upsample 0 (2 processes)", f(mr["w2_u0p2"], 2, "x"), ""],
        ] + ([
            ["lookalike 1 worker with --mirror / peer --upsample 1", f(mr["m1_u1"], 1, "x"), "(option)"],
            ["lookalike 1 worker with --mirror / peer --upsample 0", f(mr["m1_u0"], 2, "x"), "(option)"],
            ["lookalike 1 worker with --mirror / without", f(mr["m1_w1"], 2, "x"),
             f"CPU ms/photo {f(med(mirror_cpu), 1)}"],
        ] if mirror_cpu else []))
        # Per CPU second (load-independent): CPU ms per photo of each side.
        cpu_rows = []
        lk_cpu = med([x.get("cpu_ms_per_photo") for p_ in reps for x in self.j(os.path.basename(p_))["results"]
                      if x["workers"] == 1])
        for up in (1, 0):
            for p in (1, 2):
                vals = []
                for path in reps:
                    r = path.rsplit("_r", 1)[1].split(".")[0]
                    d = self.j(f"thr_peer_u{up}_p{p}_r{r}.json")
                    if d and d.get("cpu_seconds") and d.get("images"):
                        vals.append(1e3 * d["cpu_seconds"] / d["images"])
                if vals and lk_cpu:
                    cpu_rows.append([f"peer --upsample {up}, {p} process(es)", f(med(vals), 0), f(lk_cpu, 1),
                                     f(med(vals) / lk_cpu, 1, "x")])
                    self.cpu_ratio[(up, p)] = med(vals) / lk_cpu
        if cpu_rows:
            self.out("Per CPU second (independent of how much of the shared machine each side got): CPU time per "
                     "photo of the peer's whole process tree (includes its start-up and model loading, about 1 s "
                     "of CPU per process) vs lookalike's process with 1 worker:", "")
            self.table(["peer configuration", "peer CPU ms/photo", "lookalike CPU ms/photo (1 worker)",
                        "lookalike photos per CPU-second / peer's"], cpu_rows)
        cpu = {1: [], 2: []}
        for path in reps:
            d = self.j(os.path.basename(path))
            for x in d["results"]:
                if x["workers"] in cpu and "cpu_ms_per_photo" in x:
                    cpu[x["workers"]].append((x["cpu_ms_per_photo"], x["cores_used"], d.get("loadavg_before")))
        if cpu[1] and cpu[2]:
            self.out("Where the second worker's gain goes: CPU time of the lookalike process per photo and the "
                     "cores it actually got (from /proc/self/stat) — if CPU ms per photo stays flat from 1 to 2 "
                     "workers but fewer than 2 cores were obtained, the machine's other load took the difference.", "")
            self.table(["workers", "CPU ms per photo (median)", "cores obtained (median)", "load average (1 min) at start"],
                       [[w, f(med([c[0] for c in cpu[w]]), 1), f(med([c[1] for c in cpu[w]]), 2),
                         ", ".join(f(c[2], 1) for c in cpu[w])] for w in (1, 2)])
            c1, c2 = med([c[0] for c in cpu[1]]), med([c[0] for c in cpu[2]])
            self.scaling_cpu = 2 * c1 / c2
            self.out(f"With two dedicated cores, 2 workers would reach 2 x {f(c1, 1)} / {f(c2, 1)} = "
                     f"**{f(self.scaling_cpu, 2, 'x')}** of one worker (CPU cost per photo is the only limit once "
                     "the cores are free; the extra CPU per photo with 2 workers is shared caches and memory).", "")
        t = lambda v, lim: None if v is None else v >= lim  # noqa: E731
        cr = lambda k: f" (per CPU second: {f(self.cpu_ratio[k], 1, 'x')})" if k in self.cpu_ratio else ""  # noqa: E731
        self.target("photos/s 1 worker ≥ 10x peer --upsample 1", f(mr["w1_u1"], 1, "x") + cr((1, 1)), t(mr["w1_u1"], 10))
        self.target("photos/s 1 worker ≥ 2x peer --upsample 0", f(mr["w1_u0"], 2, "x") + cr((0, 1)), t(mr["w1_u0"], 2))
        self.target("2 workers ≥ 1.7x 1 worker", f(mr["w2_w1"], 2, "x") + (
            f" (CPU-bound: {f(self.scaling_cpu, 2, 'x')})" if self.scaling_cpu else ""), t(mr["w2_w1"], 1.7))

    def grpc(self):
        g = self.j("grpc.json")
        if not g:
            return
        self.out("## 2. Through the gRPC server", "",
                 f"`matcher serve` (release build) with the 12k gallery; a Rust load generator "
                 f"(`lookalike-bench grpc`, one connection, closed loop) sends `Match` calls with the "
                 f"{g['photos']} tg1280 photos; {g['warmup_seconds']} s warm-up, then {g['seconds_per_level']} s "
                 f"measured per concurrency level. The server's queue is its default (2 x workers); a refused "
                 f"client backs off {g['backoff_ms_after_refusal']} ms. The in-process engine ran with the same "
                 "workers on the same photos in the same run (note: client and server share the 2 cores).", "")
        rows = []
        self.plot["grpc"] = {}
        for s in g["servers"]:
            w = s["workers"]
            self.plot["grpc"][w] = s["levels"]
            for lv in s["levels"]:
                rows.append([w, lv["concurrency"], f(lv["photos_per_second"]), f(lv["ratio_to_in_process"], 2, "x"),
                             f(lv["p50_ms"], 0), f(lv["p99_ms"], 0), pct(lv["refused_share"]), lv["errors"]])
        self.table(["workers", "concurrency", "photos/s", "vs in-process", "p50 ms", "p99 ms", "refused", "errors"], rows)
        self.table(["workers", "in-process photos/s", "best gRPC photos/s", "gRPC / in-process"], [
            [s["workers"], f(s["in_process_photos_per_second"]),
             f(max(lv["photos_per_second"] for lv in s["levels"])),
             f(max(lv["photos_per_second"] for lv in s["levels"]) / s["in_process_photos_per_second"], 2, "x")]
            for s in g["servers"]])
        self.out("### Memory of `matcher serve` (12k gallery)", "")
        rows = []
        for s in g["servers"]:
            a, b = s["memory_after_load"], s["memory_after_load_run"]
            rows.append([s["workers"], s["gallery_embeddings"], f(a["vm_rss_mb"], 1), f(a["vm_hwm_mb"], 1),
                         f(b["vm_rss_mb"], 1), f(b["vm_hwm_mb"], 1), b["threads"]])
        self.table(["workers", "embeddings", "VmRSS after load (MB)", "VmHWM after load", "VmRSS after load run",
                    "VmHWM after load run", "threads"], rows)
        two = [s for s in g["servers"] if s["workers"] == 2]
        if two:
            peak = max(two[0]["memory_after_load_run"]["vm_hwm_mb"] or 0, two[0]["memory_after_load_run"]["vm_rss_mb"] or 0)
            self.target("matcher memory, 2 workers, 12k gallery ≤ 200 MB (VmHWM)", f(peak, 0, " MB"), peak <= 200)

    def stages(self):
        s = self.j("stages.json")
        if not s:
            return
        self.out("## 3. Per-stage latency (one worker)", "",
                 f"Median (p90) milliseconds per photo; hires/ photos resized to each size (JPEG q87); the ~4000 px "
                 f"set is every hires photo of ≥2000 px scaled to 4000 px (only one is natively larger); search on "
                 f"the {s['gallery_embeddings']}-embedding gallery ({s['index']}). Detection runs on a copy of at "
                 "most 640 px (DetectConfig::max_side), so its cost hardly grows with the photo; decoding does.", "")
        names = ["decode", "detect", "landmarks", "encode", "search", "total"]
        rows = []
        for z in s["sizes"]:
            st = z["stages"]
            rows.append([f"{z['side']} px", z["photos"]] + [f"{f(st[n]['p50_ms'], 2 if n in ('search', 'landmarks') else 1)} "
                                                           f"({f(st[n]['p90_ms'], 2 if n in ('search', 'landmarks') else 1)})" for n in names])
        self.table(["size", "photos"] + names, rows)
        if all("analyze_cpu_p50_ms" in z for z in s["sizes"]):
            self.out("CPU time of the worker thread per photo (decode to embedding, p50), against the wall time of "
                     "the same stages: the difference is time spent waiting for a core on the shared machine — "
                     + "; ".join(f"{z['side']} px: {f(z['analyze_cpu_p50_ms'], 1)} ms CPU vs "
                                 f"{f(z['stages']['total']['p50_ms'] - z['stages']['search']['p50_ms'], 1)} ms wall"
                                 for z in s["sizes"]) + ".", "")
        if all("landmarks_private_predictor_p50_ms" in z for z in s["sizes"]):
            self.out("A/B in the same run: landmarks with the engine's shared shape predictor vs a private deep "
                     "copy per analyzer (as before the engine shared it): " + "; ".join(
                         f"{z['side']} px {f(z['stages']['landmarks']['p50_ms'], 2)} vs "
                         f"{f(z['landmarks_private_predictor_p50_ms'], 2)} ms" for z in s["sizes"]) + ".", "")
        self.plot["stages"] = s["sizes"]

    def search(self):
        lk, pe = self.j("search_lk.json"), self.j("search_peer.json")
        if not lk:
            return
        pe_by = {x["size"]: x for x in (pe or {}).get("sizes", [])}
        self.out("## 4. Search: exact vs HNSW", "",
                 f"{lk['real_embeddings']} real LFW embeddings (lookalike, jitter 0); {lk['queries']} of them are held "
                 "out as queries, the rest fill the index, padded to each size with synthetic embeddings "
                 "(mean + Σ w_t (x_t − mean) over three random real ones with unit-norm random weights, which keeps "
                 "the real mean and covariance, rescaled to a real embedding's norm); every synthetic row is its own "
                 "identity. Recall is against the exact search (identity level). HNSW: built by hnsw_rs with the engine's "
                 "defaults, queried through the engine's flat copy of the graph (search::graph) over the same rows. Latency is one query (top-1) on one "
                 "thread: the thread's CPU time (CLOCK_THREAD_CPUTIME_ID; what a query costs, whatever the machine's "
                 "load) and the wall time (which on this shared machine includes waiting for a core); where only wall "
                 "times are shown, that run predates the CPU timing. Memory: at build, the index's growth of the process's resident memory (hnsw_rs keeps its own copy "
                 "of the vectors); served, a gallery loaded from its file keeps only the flat graph (shown) besides the "
                 "rows; exact = the f32 rows plus their f16 copy.", "")
        rows, plot, f16rows = [], [], []
        for z in lk["sizes"]:
            n = z["size"]
            h = z["hnsw"]
            d = next((e for e in h["per_ef"] if e["ef_search"] == DEFAULT_EF), h["per_ef"][0])
            ok = [e for e in h["per_ef"] if e["recall_at_1"] >= 0.99]
            best = min(ok, key=lambda e: (e.get("cpu") or e["latency"])["p50_ms"]) if ok else None
            p = pe_by.get(n, {})
            nm = p.get("nmslib", {})
            nme = (nm.get("per_ef") or [{}])[0]
            ex = z["exact"].get("cpu") or z["exact"]["latency"]
            exw = z["exact"]["latency"]
            cpu_of = lambda e: (e.get("cpu") or e["latency"])  # noqa: E731
            rows.append([f"{n:,}", f"{z['real']:,} + {z['synthetic']:,}",
                         f"{f(ex['p50_ms'], 3)} / {f(exw['p50_ms'], 3)} / {f(exw['p99_ms'], 3)}",
                         f"M{h['m']}/efC{h['ef_construction']}: {f(h['build_seconds'], 1)} s", f(h["memory_mb"], 0),
                         f(h.get("flat_graph_mb"), 0),
                         f"{f(cpu_of(d)['p50_ms'], 3)} / {f(d['latency']['p50_ms'], 3)} / {f(d['latency']['p99_ms'], 3)}",
                         f(d["recall_at_1"], 3), f(d["recall_at_10"], 3),
                         (f"ef {best['ef_search']}: {f(cpu_of(best)['p50_ms'], 3)}" if best else "none ≥0.99"),
                         f"{f(p.get('numpy', {}).get('latency', {}).get('p50_ms'), 2)}",
                         (f"M{nm['M']}/efC{nm['ef_construction']}: {f(nm['build_seconds'], 0)} s, {f(nm['memory_mb'], 0)} MB"
                          if "build_seconds" in nm else nm.get("skipped", "n/a")),
                         f"{f(nme.get('latency', {}).get('p50_ms'), 3)}", f(nme.get("recall_at_1"), 3),
                         f(nme.get("recall_at_10"), 3)])
            f32 = z.get("exact_f32") or {}
            if f32:
                f32c = f32.get("cpu") or f32["latency"]
                f16rows.append([f"{n:,}", z["exact"].get("kind", "f32 scan"), f(f32c["p50_ms"], 3), f(ex["p50_ms"], 3),
                                f(f32c["p50_ms"] / ex["p50_ms"], 2, "x"), f(z["exact"].get("agrees_top1"), 4),
                                f(z["exact"].get("agrees_top10"), 4), f(f32["memory_mb"], 1), f(z["exact"]["memory_mb"], 1)])
            plot.append((n, ex["p50_ms"], cpu_of(d)["p50_ms"],
                         p.get("numpy", {}).get("latency", {}).get("p50_ms"), nme.get("latency", {}).get("p50_ms")))
            if n == 12000:
                v = ex["p50_ms"]
                self.target("exact search p50 ≤ 0.2 ms at 12k", f(v, 3, " ms") + (" (CPU time)" if z["exact"].get("cpu") else ""),
                            v <= 0.2)
            if n == 1_000_000:
                # The operator sets efSearch (--hnsw-ef) for the gallery size: the fastest ef that
                # reaches the recall is the one that counts; without one, the engine's default ef is shown.
                e = best or d
                self.target(f"search p50 ≤ 1 ms at 1M with recall@1 ≥ 0.99 (HNSW M{h['m']}/efC{h['ef_construction']}, "
                            f"fastest ef reaching the recall)",
                            f"ef {e['ef_search']}: {f(cpu_of(e)['p50_ms'], 3)} ms{' (CPU time)' if e.get('cpu') else ''}, "
                            f"recall@1 {f(e['recall_at_1'], 3)}",
                            cpu_of(e)["p50_ms"] <= 1 and e["recall_at_1"] >= 0.99)
        self.plot["search"] = plot
        self.table(["embeddings", "real + synthetic", "exact ms: CPU p50 / wall p50 / wall p99", "HNSW build", "HNSW MB at build", "graph MB served",
                    f"HNSW ef{DEFAULT_EF} (default) ms: CPU p50 / wall p50 / wall p99", "recall@1", "recall@10", "fastest ef with recall@1≥0.99 (CPU p50 ms)",
                    "peer NumPy p50 ms", "peer nmslib build", "nmslib ef400 p50 ms", "recall@1", "recall@10"], rows)
        if f16rows:
            self.out("The engine's exact search against the plain f32 scan (the baseline, same run, same queries): "
                     "an f16 copy of the rows picks candidates with a proven error bound and the f32 rows decide, so "
                     "the answer must be the f32 scan's (agreement on top-1 and on the whole top-10 list below). "
                     "CPU p50 per query, top-1:", "")
            self.table(["embeddings", "engine exact search", "f32 scan p50 ms", "engine p50 ms", "speed-up",
                        "same top-1", "same top-10", "f32 MB", "engine MB (f32 + f16)"], f16rows)
        self.out("HNSW efSearch sweep (lookalike, same index):", "")
        srows = []
        for z in lk["sizes"]:
            for e in z["hnsw"]["per_ef"]:
                srows.append([f"{z['size']:,}", e["ef_search"], f((e.get("cpu") or {}).get("p50_ms"), 3),
                              f(e["latency"]["p50_ms"], 3), f(e["latency"]["p99_ms"], 3),
                              f(e["recall_at_1"], 3), f(e["recall_at_10"], 3),
                              f(e.get("queries_with_fewer_than_10_identities"))])
        self.table(["embeddings", "ef", "CPU p50 ms", "wall p50 ms", "wall p99 ms", "recall@1", "recall@10",
                    "queries given < 10 identities for top-10"], srows)
        if pe:
            note = [f"{x['size']:,}: M={x['nmslib']['M']}, efConstruction={x['nmslib']['ef_construction']}"
                    for x in pe["sizes"] if "M" in x.get("nmslib", {})]
            self.out("Peer nmslib parameters per size (the peer's M=100, efConstruction=2000, efSearch=400 where "
                     "they finish in reasonable time; smaller where stated): " + "; ".join(note) +
                     ". The peer's NumPy search is its own code (norm over all rows, then a full argsort); at "
                     "100k and 1M it is timed on the first 100 queries.", "")

    def accuracy(self):
        rows = []
        labels = {"lk_g10": "lookalike, gallery jitters 10", "lk_g0": "lookalike, gallery jitters 0",
                  "lk_g10_plain": "lookalike --crowding-weight 0 (plain nearest), gallery jitters 10",
                  "lk_mirror_g10": "lookalike --mirror (queries mirror-averaged), gallery jitters 10",
                  "lk_mirror_g10_plain": "lookalike --mirror --crowding-weight 0, gallery jitters 10",
                  "lk_mirror_g0": "lookalike --mirror, gallery jitters 0 (mirror-averaged too)",
                  "peer_u1_g10": "peer --upsample 1, gallery jitters 10 (original)",
                  "peer_u1_g0": "peer --upsample 1, gallery jitters 0",
                  "peer_u0_g10": "peer --upsample 0, gallery jitters 10", "peer_u0_g0": "peer --upsample 0, gallery jitters 0"}
        order = list(labels)
        files = sorted(glob.glob(os.path.join(self.r, "acc_*.json")))
        keys = [os.path.basename(x)[4:-5] for x in files]
        # Full-set results first, then results on a subset (e.g. q300_: the first 300 people).
        def sort_key(k):
            sub, _, base = k.rpartition("_q300_") if "_q300_" in k else ("", "", k)
            pre = k.split("_", 1)[0] if k.startswith("q") and k[1:4].isdigit() else ""
            base = k[len(pre) + 1:] if pre else k
            return (pre, order.index(base) if base in order else 99)
        got = {}
        for key in sorted(keys, key=sort_key):
            d = self.j(f"acc_{key}.json")
            if not d:
                continue
            got[key] = d
            pre = key.split("_", 1)[0] if key.startswith("q") and key[1:4].isdigit() else ""
            base = key[len(pre) + 1:] if pre else key
            label = labels.get(base, base) + (f" — subset: first {d['people']} people (`--quick --extra`)" if pre else "")
            v = d.get("verification") or {}
            rows.append([label, d["gallery_identities"], d["queries"], pct(d["rank1"]), pct(d["rank1_capped"]),
                         pct(v.get("accuracy_at_0_6")), f"{pct(v.get('accuracy_at_best'))} @ {f(v.get('best_threshold'), 3)}",
                         f"{d['photos_without_face']} / {d['photos']} ({pct(d['no_face_rate'], 2)})"])
        if not rows:
            return
        self.out("## 5. Accuracy on lfw-dev", "",
                 "Gallery = each person's first photo (main face, no quality filter: the engine API directly); "
                 "lookalike ranks as the matcher does by default, with the crowding correction "
                 "(distance − 0.4 × the identity's mean distance to its 10 nearest other gallery identities, "
                 "computed from the gallery alone; `services/engine/src/search/crowding.rs`), the *plain* rows by "
                 "plain distance like the peer; "
                 "every other photo is a query; a query without a face is a miss. Capped = at most 10 queries per "
                 "person. Verification: pairsDevTrain.txt (1,100 same + 1,100 different pairs), Euclidean distance of jitter-0 "
                 "embeddings, 'same' below the threshold, a pair with a faceless photo counts as 'different'; "
                 "the best threshold is fitted on the same pairs (optimistic). The peer runs its own functions "
                 "(seed_pipeline.embed: first detection, then its `build --one-per-person` + `match` logic) in 2 processes.", "")
        self.table(["system", "gallery", "queries", "rank-1", "rank-1 capped", "verif. @0.6", "verif. best", "no face"], rows)
        mrows = []
        for key, d in got.items():
            m = d.get("misses")
            if m and d.get("queries"):
                wrong = d["queries"] - d["rank1_correct"]
                mrows.append([d["label"], wrong, m["no_face"], m["right_person_within_0_6"], m["right_person_0_6_to_0_8"],
                              m["right_person_beyond_0_8"], m["person_not_in_gallery"], f(m["median_gap_to_winner"], 3)])
        if mrows:
            self.out("Why the misses: for each wrong answer, the distance of the query to the right person's gallery "
                     "photo. 'Within 0.6' = the model calls them the same person (dlib's threshold), yet someone else "
                     "in the 4,038-person gallery is closer: the embedding's own resolution, which both sides share "
                     "(same dlib ResNet). Beyond 0.8 = a photo the model cannot place (profile, blur, occlusion, or "
                     "another face in the photo). Gap = median of (right person's distance − winner's distance).", "")
            self.table(["system", "wrong", "no face", "right person within 0.6", "0.6-0.8", "beyond 0.8",
                        "person not in gallery", "median gap"], mrows)
        lks = [got[k] for k in ("lk_g10", "lk_g0") if k in got]
        peers = [got[k] for k in ("peer_u1_g10", "peer_u1_g0", "peer_u0_g10", "peer_u0_g0") if k in got]
        if lks and peers:
            lk = max(lks, key=lambda d: d["rank1"])
            best_peer = max(peers, key=lambda d: d["rank1"])
            diff = 100 * (lk["rank1"] - best_peer["rank1"])
            self.target("rank-1 on all of lfw-dev ≥ best peer + 2 points",
                        f"{pct(lk['rank1'])} ({lk['label']}) vs {pct(best_peer['rank1'])} ({best_peer['label']}): "
                        f"{diff:+.1f} pts", diff >= 2)
            mir = [got[k] for k in ("lk_mirror_g10", "lk_mirror_g0") if k in got]
            if mir:
                m = max(mir, key=lambda d: d["rank1"])
                dm = 100 * (m["rank1"] - best_peer["rank1"])
                self.target("(option --mirror) rank-1 ≥ best peer + 2 points",
                            f"{pct(m['rank1'])} ({m['label']}): {dm:+.1f} pts", dm >= 2)
        lk = got.get("lk_g10") or got.get("lk_g0")
        if lk:
            self.target("no-face rate ≤ 0.2%", pct(lk["no_face_rate"], 2), lk["no_face_rate"] <= 0.002)
        for key in ("lk_g0", "peer_u0_g0", "peer_u1_g0"):
            e = self.j(f"embed_{'lk_q0' if key == 'lk_g0' else 'peer_' + key[5:7] + '-q0'}.json")
            if e and e.get("no_face_photos"):
                self.out(f"Photos without a face ({key.split('_g')[0]}): " + ", ".join(
                    "/".join(p.split("/")[-2:]) for p in e["no_face_photos"][:30]) +
                    (" ..." if len(e["no_face_photos"]) > 30 else ""), "")
        emb = [(k, self.j(f"embed_{k}.json")) for k in ("lk_q0", "lk_g10", "lk_mirror-q0", "peer_u0-q0", "peer_u1-q0",
                                                         "peer_u0-g10", "peer_u1-g10")]
        self.table(["embedding pass (2 workers/processes)", "photos", "photos/s", "median ms/photo", "seconds"],
                   [[k, e["photos"], f(e["photos_per_second"], 1), f(e["ms_per_photo_median"], 1), f(e["seconds"], 0)]
                    for k, e in emb if e])

    def gbuild(self):
        lk = self.j("gbuild_lk.json")
        if not lk:
            return
        pj = {j: self.j(f"gbuild_peer_j{j}.json") for j in (10, 0)}
        self.out("## 6. Gallery build throughput", "",
                 f"Photos of `{os.path.relpath(lk['photos_dir'], os.path.dirname(self.a.repo))}`; lookalike: "
                 "`gallery::build::build` (default quality filters, thumbnails, calibration) with N workers; "
                 "peer: `seed_pipeline.py build` (its default --upsample 1, one process).", "")
        rows = []
        for j in (10, 0):
            p = pj.get(j)
            pps = p["photos"] / p["seconds"] if p and p.get("seconds") else None
            for x in lk["results"]:
                if x["jitters"] == j:
                    rows.append([j, f"lookalike, {x['workers']} worker(s)", f(x["photos_per_second"]),
                                 f(x["photos_per_second"] / pps, 1, "x") if pps else "n/a"])
            rows.append([j, "peer, 1 process", f(pps), "1x"])
        self.table(["jitters", "system", "photos/s", "vs peer"], rows)

    def cards(self):
        c = self.j("cards.json")
        if not c:
            return
        self.out("## 7. Reply cards", "",
                 "The bot's card (the sender's face beside the celebrity's, percentage and name drawn under them) "
                 "next to the match it illustrates, for the same photo: *match* is the matcher's work as `Match` "
                 "with `return_chips` does it (decode, detect, landmarks, encode, search, chip JPEGs; in process, "
                 "one worker, demo gallery), *compose* is `tg_gateway::card::compose` (decode the two chips per face, "
                 "scale them to 320 px, draw the text, encode the JPEG) from those chips and the gallery's "
                 f"thumbnails. Medians of {c.get('reps')} runs each. The pictures are in `docs/cards/`.", "")
        rows = []
        for x in c["cards"]:
            w, h = x["card_size"]
            photo = os.path.relpath(x["photo"], os.path.dirname(self.a.repo))
            rows.append([f"{x.get('label', '')}: `{photo}`", x["faces"], ", ".join(x["names"]), f(x["match_ms"], 1),
                         f(x["chips_ms"], 2), f(x["compose_ms"], 2), pct(x["compose_share_of_match"]),
                         f(x["card_bytes"] / 1024, 0), f"{w}x{h}"])
        self.table(["photo", "faces", "matched", "match ms", "of which chips ms", "compose ms", "compose / match",
                    "card KB", "card px"], rows)

    def flood(self):
        fl = self.j("flood.json")
        if not fl:
            return
        self.out("## 10. A flood of the worst photos", "",
                 f"`lookalike-bench flood`: each input kind (`tests/src/worst.rs`, made from `shared/faces`) on a "
                 f"fresh `matcher serve` ({fl.get('workers')} workers, memory budget {fl.get('budget_mb')} MB), "
                 f"a warm-up selfie, then {fl.get('callers')} callers x {fl.get('rounds')} round(s) of the same photo "
                 "at once. *default*: the matcher's defaults (retry and CNN passes within a 25 % CPU share and a 2-s "
                 "burst, full at the start of each kind); *burst-spent*: a 0.1-s burst, what a long flood costs per "
                 "photo; *every-pass*: `--fallback-share 1`. CPU: the process's user + system time per photo "
                 "answered; peak: VmHWM over the resting memory; resident: VmRSS 3 s after the flood.", "")
        builds = fl.get("builds", [])
        rows, ratio = [], []
        pairs = [("250 px", "face, 250 px", "no face, 250 px"),
                 ("1280 px", "face, 1280 px (re-encoded)", "no face, 1280 px"),
                 ("16 MP", "face, 16 MP", "no face, 16 MP")]
        for b in builds:
            by = {x["input"]: x for x in b["rows"]}
            for x in b["rows"]:
                answers = ", ".join(f"{k} {v}" for k, v in sorted(x.get("answers", {}).items()))
                rows.append([x["input"], b["label"], f(x["peak_over_resting_mb"], 0), f(x["rss_3s_after_mb"], 0),
                             f(x["cpu_ms_per_photo"], 0), answers])
            cells = []
            for _, face, none in pairs:
                if face in by and none in by and by[face]["cpu_ms_per_photo"]:
                    cells.append(f(by[none]["cpu_ms_per_photo"] / by[face]["cpu_ms_per_photo"], 1, "x"))
                else:
                    cells.append("n/a")
            ratio.append([b["label"]] + cells)
        self.table(["input", "settings", "peak over resting MB", "resident 3 s after MB", "CPU ms per photo",
                    "answers"], rows)
        self.out("CPU of a photo without a face / one with a face, same size and format (baseline JPEG):", "")
        self.table(["settings"] + [p[0] for p in pairs], ratio)

    # ---- output --------------------------------------------------------------------------------
    def header(self):
        cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
        mem = sh("free -g | awk '/Mem:/{print $2}'")
        commit = sh(f"git -C {self.a.repo} rev-parse --short HEAD 2>/dev/null")
        dirty = sh(f"git -C {self.a.repo} status --porcelain -- services proto Cargo.lock 2>/dev/null | head -1")
        snap = os.path.join(self.a.repo, ".snapshot-commit")
        if not commit and os.path.exists(snap):  # a `git archive` snapshot of a commit
            commit = open(snap).read().strip()[:7] + " (snapshot)"
        peerv = sh(f"{self.a.peer_python} -c 'import dlib, numpy; print(\"dlib\", dlib.__version__, \"BLAS\", "
                   f"dlib.DLIB_USE_BLAS, \"numpy\", numpy.__version__)' 2>/dev/null")
        load = sh("cat /proc/loadavg | cut -d' ' -f1-3")
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.head = [
            "# Benchmarks", "",
            "Written by `scripts/bench.sh` (issue 6); do not edit by hand. Re-run: `scripts/bench.sh` "
            "(full, about 50 min on 2 quiet cores once the peer's LFW embeddings are cached, plus about 30 min "
            "the first time) or `scripts/bench.sh --quick` (a smoke test on small inputs).", "",
            f"- Date: {date}; mode: **{self.a.mode}**; the whole run took {self.a.seconds // 60} min.",
            f"- Machine: {cpu}, {os.cpu_count()} cores, {mem} GiB RAM, {platform.system()} {platform.release()}; "
            f"load average at the end {load} (a shared, noisy machine: every comparison below is a ratio of "
            "two measurements made in the same run, on the same inputs; medians over repetitions. The kernel shares "
            "the CPU between sessions (sched_autogroup), so on a busy machine a 2-thread process gets little more "
            "than a 1-thread one: see the CPU-time columns).",
            f"- Code: commit {commit}{' plus uncommitted changes' if dirty else ''}; {sh('rustc --version')}; "
            "release profile, x86-64-v3 (.cargo/config.toml), OPENBLAS_NUM_THREADS=1 for both sides.",
            f"- Peer: `shared/peers/seed_pipeline.py` in its venv ({peerv}); nmslib from its PyPI wheel.",
            "- Photos: `shared/faces` (tg1280, hires, lfw-dev). Raw JSON results: `$CARGO_TARGET_DIR/bench/<mode>/`.",
            "",
        ]

    def targets_md(self):
        if not self.targets:
            return []
        lines = ["## Targets", "", "| target | measured | status |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in self.targets]
        return lines + [""]

    def write_plot(self, path):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 2, figsize=(13, 9))
        ax = axes[0][0]
        t = self.plot.get("throughput")
        if t:
            labels = ["lookalike\n1 worker", "lookalike\n2 workers", "peer up1\n×1", "peer up1\n×2", "peer up0\n×1",
                      "peer up0\n×2"]
            vals = [t[k] or 0 for k in ("w1", "w2", "u1p1", "u1p2", "u0p1", "u0p2")]
            bars = ax.bar(labels, vals, color=["#2b7bba", "#2b7bba", "#d9822b", "#d9822b", "#e8b04a", "#e8b04a"])
            ax.bar_label(bars, fmt="%.2f", fontsize=8)
            ax.set_ylabel("photos / s")
            ax.set_title("Throughput on tg1280 (in process; median of reps)")
        ax = axes[0][1]
        g = self.plot.get("grpc")
        if g:
            ax2 = ax.twinx()
            for w, levels in g.items():
                c = [lv["concurrency"] for lv in levels]
                ax.plot(c, [lv["photos_per_second"] for lv in levels], "o-", label=f"{w} worker(s): photos/s")
                ax2.plot(c, [lv["p50_ms"] for lv in levels], "s--", alpha=0.6, label=f"{w} worker(s): p50 ms")
                ax2.plot(c, [lv["p99_ms"] for lv in levels], "^:", alpha=0.6, label=f"{w} worker(s): p99 ms")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel("photos / s")
            ax2.set_ylabel("latency ms")
            ax.set_title("gRPC matcher serve: throughput and latency")
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
        ax = axes[1][0]
        s = self.plot.get("stages")
        if s:
            names = ["decode", "detect", "landmarks", "encode", "search"]
            bottom = [0.0] * len(s)
            xl = [f"{z['side']} px" for z in s]
            for n in names:
                v = [z["stages"][n]["p50_ms"] for z in s]
                ax.bar(xl, v, bottom=bottom, label=n)
                bottom = [b + x for b, x in zip(bottom, v)]
            ax.set_ylabel("ms (median, one worker)")
            ax.set_title("Per-stage latency by photo size")
            ax.legend(fontsize=8)
        ax = axes[1][1]
        sr = self.plot.get("search")
        if sr:
            n = [x[0] for x in sr]
            for i, lab in enumerate(["lookalike exact", f"lookalike HNSW ef{DEFAULT_EF}", "peer NumPy", "peer nmslib ef400"], 1):
                pts = [(a[0], a[i]) for a in sr if a[i]]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=lab)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("embeddings")
            ax.set_ylabel("p50 ms per query")
            ax.set_title("Search latency")
            ax.legend(fontsize=8)
        fig.suptitle(f"lookalike benchmarks ({self.a.mode}) — {datetime.date.today()}")
        fig.tight_layout()
        fig.savefig(path, dpi=90)

    def raw(self):
        lines = ["## Raw results", "", "<details><summary>JSON written by each step (long photo lists cut)</summary>", ""]
        for path in sorted(glob.glob(os.path.join(self.r, "*.json"))):
            d = load(path)
            if isinstance(d, dict):
                for k in ("no_face_photos", "error_photos", "sources"):
                    if isinstance(d.get(k), list) and len(d[k]) > 5:
                        d[k] = d[k][:5] + [f"... {len(d[k]) - 5} more"]
                if "sizes" in d:
                    for z in d["sizes"]:
                        if isinstance(z, dict) and isinstance(z.get("sources"), list) and len(z["sources"]) > 3:
                            z["sources"] = z["sources"][:3] + [f"... {len(z['sources']) - 3} more"]
            lines += [f"`{os.path.basename(path)}`", "", "```json", json.dumps(d, separators=(",", ":")), "```", ""]
        return lines + ["</details>", ""]


def splice(a, r, sections):
    """Renders `sections` alone and puts each into the existing report `a.splice` in place of
    its earlier version (or before "## Commands"), with a line saying when and on which commit
    it was measured; the rest of the report is left as it was."""
    with open(a.splice) as fh:
        lines = fh.read().split("\n")
    commit = sh(f"git -C {a.repo} rev-parse --short HEAD") or "unknown"
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for section in sections:
        r.md = []
        section()
        if not r.md:
            continue
        r.md[1:1] = ["", f"*Re-run alone on {when}, commit {commit}: `scripts/bench.sh --sections "
                         f"{section.__name__} --splice`; machine as in the header.*"]
        heading = r.md[0]
        if heading in lines:
            start = lines.index(heading)
            end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
            lines[start:end] = r.md
        else:
            at = lines.index("## Commands") if "## Commands" in lines else len(lines)
            lines[at:at] = r.md
        print("\n".join(r.md))
    with open(a.splice, "w") as fh:
        fh.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--mode", default="full")
    ap.add_argument("--repo", required=True)
    ap.add_argument("--peer-python", default="python3")
    ap.add_argument("--seconds", type=int, default=0)
    ap.add_argument("--md")
    ap.add_argument("--plot")
    ap.add_argument("--note", help="a Markdown file inserted after the header (how a partial run was assembled)")
    ap.add_argument("--splice", help="an existing report: replace only the --only sections in it")
    ap.add_argument("--only", default="", help="comma-separated section names for --splice (e.g. cards)")
    a = ap.parse_args()
    r = Report(a)
    r.header()
    sections = (r.throughput, r.grpc, r.stages, r.search, r.accuracy, r.gbuild, r.cards, r.flood)
    if a.splice:
        splice(a, r, [s for s in sections if s.__name__ in a.only.split(",")])
        return
    for section in sections:
        try:
            section()
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the others
            r.out(f"(section {section.__name__} failed: {e!r})", "")
    cmds = ["## Commands", "", "```", "scripts/bench.sh" + (" --quick" if a.mode == "quick" else ""),
            "# which runs, per section (see the script for the exact arguments):",
            "lookalike-bench embed | accuracy | make-gallery | throughput | grpc | stages | search | gallery-build"
            " | cards | flood",
            "seed_pipeline.py match --upsample {1,0} --workers {1,2} tg1280/*/*.jpg",
            "seed_pipeline.py build --jitters {10,0}",
            "scripts/bench/peer.py embed | search | npz   # the peer's own functions on the same inputs", "```", ""]
    note = []
    if a.note and os.path.exists(a.note):
        with open(a.note) as fh:
            note = [fh.read().strip(), ""]
    text = "\n".join(r.head + note + r.targets_md() + r.md + cmds + r.raw())
    print("\n".join(r.targets_md() + r.md))
    if a.md:
        with open(a.md, "w") as fh:
            fh.write(text)
    if a.plot:
        r.write_plot(a.plot)


if __name__ == "__main__":
    main()
