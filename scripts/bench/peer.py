#!/usr/bin/env python3
"""The reference peer's side of the benchmarks, calling seed_pipeline.py's own functions.

  embed     embed the photos of a list (person, index, path) the way the peer's `build` and
            `match` do (first detection, 5 landmarks, ResNet; jitters for the gallery side)
            in N processes; writes raw f32 rows (NaN = no face), the format lookalike-bench reads.
  search    the peer's NumPy exact search (norm + argsort, as in `match`) and its nmslib HNSW
            index (M, efConstruction, efSearch as in the peer) on the vectors lookalike-bench wrote.
  npz       a peer gallery (.npz: names, embs, mean, std) from raw rows + names.
Run with the peer's venv python. Prints one JSON object; --json FILE writes it too.
"""
import argparse
import json
import multiprocessing
import os
import sys
import time

import numpy as np

PEER = None


def peer_module(path):
    global PEER
    if PEER is None:
        sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
        import seed_pipeline  # noqa: E402

        PEER = seed_pipeline
    return PEER


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def emit(obj, out):
    text = json.dumps(obj, indent=2)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(text)
    print(text)


_ARGS = None


def _init(peer_path, models):
    peer_module(peer_path).load_models(models)


def _embed_job(job):
    i, path, upsample, jitters = job
    p = PEER
    t = time.perf_counter()
    try:
        n, vec = p.embed(p.read_rgb(path), upsample, jitters)
    except Exception as e:  # noqa: BLE001
        return i, None, str(e), time.perf_counter() - t
    return i, vec, None, time.perf_counter() - t


def cmd_embed(a):
    items = []
    with open(a.list) as f:
        for line in f:
            person, idx, path = line.rstrip("\n").split("\t", 2)
            items.append((person, int(idx), path))
    todo = [(i, path, a.upsample, a.jitters) for i, (person, idx, path) in enumerate(items)
            if not a.first_only or idx == 0]
    rows = np.full((len(items), 128), np.nan, dtype=np.float32)
    t0 = time.perf_counter()
    no_face, errors, per = [], [], []
    with multiprocessing.Pool(a.procs, initializer=_init, initargs=(a.peer, a.models)) as pool:
        for k, (i, vec, err, dt) in enumerate(pool.imap_unordered(_embed_job, todo, chunksize=8)):
            per.append(dt)
            if err:
                errors.append(f"{items[i][2]}: {err}")
            elif vec is None:
                no_face.append(items[i][2])
            else:
                rows[i] = vec
            if (k + 1) % 1000 == 0:
                print(f"  peer embed: {k + 1}/{len(todo)}", file=sys.stderr)
    secs = time.perf_counter() - t0
    rows.astype("<f4").tofile(a.out)
    emit({"photos": len(todo), "no_face": len(no_face), "no_face_rate": len(no_face) / max(len(todo), 1),
          "errors": len(errors), "no_face_photos": no_face, "error_photos": errors,
          "upsample": a.upsample, "jitters": a.jitters, "procs": a.procs, "first_only": a.first_only,
          "seconds": secs, "photos_per_second": len(todo) / secs,
          "ms_per_photo_median": float(np.median(per) * 1e3) if per else None, "out": a.out}, a.json)


def lat(v):
    v = np.asarray(v) * 1e3
    return {"p50_ms": float(np.median(v)), "p99_ms": float(np.percentile(v, 99, method="inverted_cdf")),
            "mean_ms": float(v.mean())}


def cmd_search(a):
    import nmslib

    d = a.data_dir
    q = np.fromfile(os.path.join(d, "queries.f32"), dtype="<f4").reshape(-1, 128)
    out = []
    for size in a.sizes:
        base = np.fromfile(os.path.join(d, f"base_{size}.f32"), dtype="<f4").reshape(-1, 128)
        owners = np.fromfile(os.path.join(d, f"owners_{size}.u32"), dtype="<u4")
        gt = np.fromfile(os.path.join(d, f"gt_{size}.u32"), dtype="<u4").reshape(-1, 10)
        print(f"  peer search: {size}", file=sys.stderr)
        # NumPy exact, exactly as the peer's `match` does it (k=1).
        nq = min(len(q), a.numpy_queries if size > 20000 else len(q))
        times, hit = [], 0
        for i in range(nq):
            vec = q[i]
            t = time.perf_counter()
            dist = np.linalg.norm(base - vec, axis=1)
            ids = list(np.argsort(dist)[:1])
            times.append(time.perf_counter() - t)
            hit += int(owners[ids[0]] == gt[i, 0])
        res = {"size": size, "numpy": {"queries": nq, "latency": lat(times), "recall_at_1": hit / nq}}
        # nmslib HNSW with the peer's parameters (a smaller efConstruction where stated).
        efc = a.efc if size <= a.efc_full_max else a.efc_large
        m = a.M if size <= a.efc_full_max else a.M_large
        if size <= a.nmslib_max:
            r0 = rss_bytes()
            index = nmslib.init(method="hnsw", space="l2", data_type=nmslib.DataType.DENSE_VECTOR)
            index.addDataPointBatch(base)
            t = time.perf_counter()
            index.createIndex({"indexThreadQty": os.cpu_count(), "post": 2, "delaunay_type": 1,
                               "M": m, "efConstruction": efc}, print_progress=False)
            build = time.perf_counter() - t
            mem = rss_bytes() - r0
            per_ef = []
            for ef in a.ef:
                index.setQueryTimeParams({"efSearch": ef})
                times, hit1, hit10 = [], 0, 0
                for i in range(len(q)):
                    t = time.perf_counter()
                    ids, dists = index.knnQuery(q[i], k=1)
                    times.append(time.perf_counter() - t)
                    hit1 += int(len(ids) > 0 and owners[ids[0]] == gt[i, 0])
                    ids10, _ = index.knnQuery(q[i], k=40)
                    seen = []
                    for r in ids10:
                        o = owners[r]
                        if o not in seen:
                            seen.append(o)
                        if len(seen) == 10:
                            break
                    hit10 += len(set(seen) & set(gt[i].tolist()))
                per_ef.append({"ef_search": ef, "latency": lat(times), "recall_at_1": hit1 / len(q),
                               "recall_at_10": hit10 / (10 * len(q))})
            res["nmslib"] = {"M": m, "ef_construction": efc, "build_seconds": build, "memory_mb": mem / 1e6,
                             "threads": os.cpu_count(), "per_ef": per_ef}
            del index
        else:
            res["nmslib"] = {"skipped": f"size above --nmslib-max {a.nmslib_max}"}
        out.append(res)
        del base
    emit({"queries": len(q), "sizes": out}, a.json)


def cmd_npz(a):
    p = peer_module(a.peer)
    embs = np.fromfile(a.rows, dtype="<f4").reshape(-1, 128)
    with open(a.names) as f:
        names = [line.rstrip("\n") for line in f]
    mean, std = p.distance_stats(embs, np.random.default_rng(0))
    np.savez(a.out, names=np.array(names), embs=embs, mean=mean, std=std)
    print(json.dumps({"npz": a.out, "rows": len(embs), "dist_mean": mean, "dist_std": std}))


def cmd_timed(a):
    """Runs a command (the peer's own CLI), passes its last stdout line (a JSON summary) on with
    the CPU seconds the command and its children used (user + system), so that throughput can
    also be compared per CPU second on a machine shared with other load."""
    import resource
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(a.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    out = json.loads(lines[-1]) if lines else {}
    out.update(cpu_seconds=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
               process_wall_seconds=wall, exit_code=proc.returncode)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", default=os.environ.get("PEER_SCRIPT", "seed_pipeline.py"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embed")
    e.add_argument("--models", required=True)
    e.add_argument("--list", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--upsample", type=int, default=1)
    e.add_argument("--jitters", type=int, default=0)
    e.add_argument("--first-only", action="store_true")
    e.add_argument("--procs", type=int, default=2)
    e.add_argument("--json")
    s = sub.add_parser("search")
    s.add_argument("--data-dir", required=True)
    s.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], required=True)
    s.add_argument("--M", type=int, default=100)
    s.add_argument("--efc", type=int, default=2000)
    s.add_argument("--efc-full-max", type=int, default=100000, help="sizes above use --efc-large/--M-large")
    s.add_argument("--efc-large", type=int, default=200)
    s.add_argument("--M-large", type=int, default=32)
    s.add_argument("--ef", type=lambda v: [int(x) for x in v.split(",")], default=[400])
    s.add_argument("--nmslib-max", type=int, default=1_000_000)
    s.add_argument("--numpy-queries", type=int, default=100)
    s.add_argument("--json")
    n = sub.add_parser("npz")
    n.add_argument("--rows", required=True)
    n.add_argument("--names", required=True)
    n.add_argument("--out", required=True)
    t = sub.add_parser("timed")
    t.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    if a.cmd == "timed" and a.command and a.command[0] == "--":
        a.command = a.command[1:]
    {"embed": cmd_embed, "search": cmd_search, "npz": cmd_npz, "timed": cmd_timed}[a.cmd](a)


if __name__ == "__main__":
    main()
