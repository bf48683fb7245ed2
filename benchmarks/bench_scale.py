"""Scale benchmark: the demo world at several sizes, per-frame stage throughput with 1 and 2
workers (local processes and a 2-worker Dask LocalCluster), peak memory, and `dvc status` time.

For each size N (synthetic frames of the chosen camera), a fresh git + DVC copy of the project is
made in ``--workdir`` with N / 2 frames per scene (2 scenes, variation clone) and ``dvc repro
dedupe`` builds demo -> ingest -> dedupe (``--no-dvc`` runs the three stages with ``python -m``
instead, for machines without DVC). Rendering is measured on the first size built; a later size
is rendered in full when the projected time (measured s/frame x N) is within
``--render-budget-s`` (default 600 s), else 100 frames per scene are rendered and longer
sequences repeat them (:func:`replicate_world`: hard links + renumbered textgt rows, then
``dvc commit demo``; the script says so in its output): every frame is still its own file and row
for ingest, dedupe, the stage and DVC, only the pixels repeat. ``--unique-per-scene K`` forces K.
Then the depth_blur stage's manifest reader and per-frame function
(:func:`sim2real.physics.dataset.read_frames`, :func:`sim2real.physics.dataset.process_frame`: read, render,
JPEG, labels) run over all N frames through :func:`sim2real.parallel.map_frames` with each
backend, each in a fresh Python process (so every measurement starts from the same memory),
writing into a scratch output; the bytes of every backend's output are compared with the
1-worker run. The load average is printed at the start and recorded for every run: the
development machine is shared, so compare ratios taken in the same run.

Peak RSS is the peak of the *sum* over the measuring process and all its descendants (pool or
Dask workers), sampled every 50 ms with psutil, from before the manifest is read to the last
frame (shared pages of forked workers count once per process; ``peak_pss_mib``, sampled every
200 ms, counts them once in total); ``peak_delta_mib`` subtracts the RSS before the run. Goals
(issue 9): >= 1.7x with 2 workers, peak RSS at the largest size within 1.2x of the smallest.

    python benchmarks/bench_scale.py --sizes 100                  # a few minutes on 2 cores
    python benchmarks/bench_scale.py --sizes 100,2000             # about 15 min on 2 shared cores
    python benchmarks/bench_scale.py --sizes 2000 --unique-per-scene 1000   # all 2,000 rendered (~15-60 min)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from tests.conftest import deep_merge  # noqa: E402


class PeakRSS:
    """Sample the summed RSS of this process tree in a background thread."""

    def __init__(self, interval_s: float = 0.05):
        import psutil
        self.proc = psutil.Process()
        self.interval_s = interval_s
        self.peak = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def total(self, pss: bool = False) -> int:
        """Summed RSS (shared pages counted once per process) or, with ``pss``, summed PSS."""
        import psutil
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss if pss else p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
                pass
        return total

    def _run(self):
        k = 0
        while not self._stop.is_set():
            self.peak = max(self.peak, self.total())
            if k % 4 == 0:  # PSS reads /proc/*/smaps: sample it less often
                self.peak_pss = max(self.peak_pss, self.total(pss=True))
            k += 1
            time.sleep(self.interval_s)

    def cpu_state(self) -> tuple[float, dict]:
        """(CPU s of this process + its reaped children, {pid: CPU s} of live descendants)."""
        import psutil
        import resource
        own = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for f in ("ru_utime", "ru_stime"))
        live = {}
        for p in self.proc.children(recursive=True):
            try:
                t = p.cpu_times()
                live[p.pid] = t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return own, live

    def __enter__(self):
        self.base = self.total()
        self._cpu0 = self.cpu_state()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.total())
        own1, live1 = self.cpu_state()
        own0, live0 = self._cpu0
        # CPU seconds used during the block by this process tree (pool workers are reaped
        # children; Dask workers are live descendants)
        self.cpu_s = (own1 - own0) + sum(v - live0.get(pid, 0.0) for pid, v in live1.items())


def copy_project(dest: Path, params_over: dict) -> None:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True)
    for rel in out.stdout.splitlines():
        if not rel or rel.startswith(("data/", "reports/")) or rel == "dvc.lock" or not (ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    (dest / "data").mkdir(exist_ok=True)
    (dest / "reports").mkdir(exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, params_over), sort_keys=False))


def sh(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "SIM2REAL_NO_PROGRESS": "1", "PYTHONPATH": "", "YOLO_OFFLINE": "true", "WANDB_MODE": "offline",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


TEXTGT_PER_FRAME = ("bbox.txt", "intrinsic.txt", "extrinsic.txt", "pose.txt")


def replicate_world(demo_root: Path, unique: int, total: int) -> int:
    """Extend each rendered sequence of ``unique`` frames to ``total`` frames by repeating it.

    Frame ``f >= unique`` gets hard links to the files of frame ``f % unique`` and copies of its
    textgt rows (bbox, intrinsic, extrinsic, pose) with the frame number changed: a valid vKITTI2
    sequence whose pixels repeat but whose files and rows are all distinct entries.
    Returns the number of files linked.
    """
    linked = 0
    for frame_dir in sorted(demo_root.glob("vkitti2/*/Scene*/*/frames/*/Camera_*")):
        for src in sorted(frame_dir.iterdir()):
            stem, num = src.stem.rsplit("_", 1)
            f = int(num)
            for g in range(f + unique, total, unique):
                os.link(src, src.with_name(f"{stem}_{g:05d}{src.suffix}"))
                linked += 1
    for var_dir in sorted(demo_root.glob("vkitti2/*textgt*/Scene*/*")):
        for name in TEXTGT_PER_FRAME:
            path = var_dir / name
            lines = path.read_text().splitlines()
            header, rows = lines[0], lines[1:]
            out = [header]
            for start in range(0, total, unique):
                for row in rows:
                    frame, rest = row.split(" ", 1)
                    if start + int(frame) < total:
                        out.append(f"{start + int(frame)} {rest}")
            path.write_text("\n".join(out) + "\n")
    return linked


def build_world(repo: Path, n: int, gen_workers: int, use_dvc: bool, rendered: int) -> dict:
    """demo -> ingest -> dedupe for ``n`` frames (2 scenes), ``rendered`` of them rendered per scene."""
    per_scene = n // 2
    rendered = min(per_scene, rendered)
    over = {"demo": {"scenes": 2, "frames_per_scene": rendered, "variations": ["clone"], "real_frames": 8},
            "data": {"scenes": ["Scene01", "Scene02"], "variations": ["clone"]},
            "compute": {"processes": gen_workers}}
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    copy_project(repo, over)
    res = {"rendered_per_scene": rendered, "load_avg_before_render": [round(x, 2) for x in os.getloadavg()]}
    if use_dvc:
        dvc = str(Path(sys.executable).parent / "dvc")
        sh(["git", "init", "-q", "-b", "main"], repo)
        if not (repo / ".dvc").exists():
            sh([dvc, "init", "-q"], repo)
        sh(["git", "add", "-A"], repo)
        sh(["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "bench"], repo)
        res["render_s"] = sh([dvc, "repro", "demo"], repo)
        res["repro_dedupe_s"] = res["render_s"]
        if per_scene > rendered:
            t0 = time.perf_counter()
            res["replicated_links"] = replicate_world(repo / "data" / "demo", rendered, per_scene)
            sh([dvc, "commit", "-f", "-q", "demo"], repo)  # the extended world is the demo stage's output
            res["replicate_s"] = round(time.perf_counter() - t0, 2)
        res["repro_dedupe_s"] += sh([dvc, "repro", "dedupe"], repo)
        res["dvc_status_s"] = [round(sh([dvc, "status"], repo), 2) for _ in range(2)]
    else:
        py = sys.executable
        res["render_s"] = sh([py, "-m", "stages.demo", "--out", "data/demo"], repo)
        res["repro_dedupe_s"] = res["render_s"]
        if per_scene > rendered:
            res["replicated_links"] = replicate_world(repo / "data" / "demo", rendered, per_scene)
        res["repro_dedupe_s"] += sum(sh(c, repo) for c in (
            [py, "-m", "stages.ingest", "--out", "data/ingest"],
            [py, "-m", "stages.dedupe", "--ingest", "data/ingest", "--out", "data/dedupe", "--report", "reports/dedupe.json"]))
    res["render_s"] = round(res["render_s"], 2)
    res["render_s_per_frame"] = round(res["render_s"] / (2 * rendered), 3)  # wall s per frame (both cameras)
    res["repro_dedupe_s"] = round(res["repro_dedupe_s"], 2)
    return res


def dirs_kwargs(fn, tmp: Path, final: str) -> dict:
    """The stage function's (temporary output, final output) keyword arguments, by name."""
    import inspect
    names = inspect.signature(fn).parameters
    if "final_dir" in names:
        return {"out_dir": str(tmp), "final_dir": final}
    return {"tmp_dir": str(tmp), "out_dir": final}


def run_backend(repo: Path, label: str, workers: int, scheduler, out: Path, limit: int | None) -> dict:
    """depth_blur's manifest reader + per-frame function over the frames with one backend.

    Peak RSS covers reading the manifest (``read_frames``) and the map, as in the stage; the
    throughput is timed over the map only."""
    from sim2real.io import tree_digest
    from sim2real.parallel import map_frames
    from sim2real.params import load_params
    from sim2real.params import plain
    from sim2real.physics.dataset import process_frame, read_frames
    from sim2real.safety import data_roots

    if Path.cwd().resolve() != repo.resolve():
        raise RuntimeError("run_backend must run with the benchmark repo as the working directory")
    p = load_params("blur", "haze", "camera", "seed", "data")
    params = {"blur": plain(p.blur), "haze": plain(p.haze), "camera": plain(p.camera)}
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    load = [round(x, 2) for x in os.getloadavg()]
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        items = read_frames("data/dedupe", roots=data_roots(p.data))[:limit]
        t1 = time.perf_counter()
        n = sum(1 for _ in map_frames(process_frame, items, workers=workers, scheduler=scheduler, desc=label,
                                      batch_size=4, params=params, seed=int(p.seed),
                                      **dirs_kwargs(process_frame, out, "data/aug/depth_blur")))
        secs = time.perf_counter() - t1
    return {"backend": label, "frames": n, "seconds": round(secs, 2), "frames_per_s": round(n / secs, 3),
            "read_frames_s": round(t1 - t0, 3), "load_avg_1_5_15": load,
            "cpu_s": round(mem.cpu_s, 2), "cpu_ms_per_frame": round(1000 * mem.cpu_s / max(n, 1), 1),
            "base_rss_mib": round(mem.base / 2**20, 1),
            "peak_rss_mib": round(mem.peak / 2**20, 1), "peak_pss_mib": round(mem.peak_pss / 2**20, 1),
            "peak_delta_mib": round((mem.peak - mem.base) / 2**20, 1), "digest": tree_digest(out)}


def child_run(spec: dict) -> dict:
    """One measurement in this (fresh) process: every backend starts from the same baseline memory,
    whatever ran before it (in one long-lived process, importing distributed for the first Dask
    run alone added ~50 MiB to every later measurement)."""
    repo = Path(spec["repo"])
    os.chdir(repo)  # frames.csv paths are relative to the repo; Dask workers inherit this cwd
    if spec["backend"] != "dask":
        return run_backend(repo, spec["label"], spec["workers"], "local", Path(spec["out"]), spec["limit"])
    import dask
    from distributed import Client, LocalCluster
    # the worker's statistical profiler samples every 10 ms: off unless asked for. Dask's
    # nanny sets MALLOC_TRIM_THRESHOLD_=65536 in workers, which turns off glibc's dynamic mmap
    # threshold: every large image array is then a fresh mmap + page faults (measured here:
    # ~1.5x the CPU per frame). Unset unless asked for (see README, section scale).
    dask.config.set({"distributed.worker.profile.enabled": bool(spec["dask_profile"])})
    if not spec["dask_malloc_trim"]:
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as lc, Client(lc) as client:
        import importlib
        client.run(importlib.import_module, "sim2real.physics.dataset")  # warm workers: imports not timed
        return run_backend(repo, spec["label"], 0, client, Path(spec["out"]), spec["limit"])


def measure(spec: dict) -> dict:
    """Run :func:`child_run` in a fresh Python process; returns its result."""
    env = {**os.environ, "SIM2REAL_NO_PROGRESS": "1", "YOLO_OFFLINE": "true", "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"measurement {spec['label']} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100", help="comma-separated frame counts (even), e.g. 100,2000")
    ap.add_argument("--workdir", default="/tmp/sim2real-bench-scale")
    ap.add_argument("--gen-workers", type=int, default=max(1, min(os.cpu_count() or 1, 16)),
                    help="processes for generating the demo world (not part of the measurement)")
    ap.add_argument("--limit", type=int, default=None, help="process only the first K frames (throughput only)")
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--dask-malloc-trim", action="store_true",
                    help="keep Dask's default MALLOC_TRIM_THRESHOLD_=65536 in workers (default: unset)")
    ap.add_argument("--dask-profile", action="store_true", help="keep Dask's worker profiler on (default off)")
    ap.add_argument("--no-dvc", action="store_true", help="build the world with python -m stages.* (no dvc status)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--unique-per-scene", default="auto",
                    help="frames rendered per scene; longer sequences repeat them (see replicate_world). 'auto' "
                         "(default): render every frame when the projected render time (rate measured on the "
                         "first size built) is within --render-budget-s, else 100 per scene")
    ap.add_argument("--render-budget-s", type=float, default=600.0)
    ap.add_argument("--reuse-world", action="store_true", help="keep a world already built in --workdir")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ["SIM2REAL_NO_PROGRESS"] = "1"
    if args.child:
        print("RESULT " + json.dumps(child_run(json.loads(args.child))), flush=True)
        return
    work = Path(args.workdir)
    results = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                           "load_avg_start": [round(x, 2) for x in os.getloadavg()]}, "sizes": {}}
    print(f"load average at start (1, 5, 15 min): {results['machine']['load_avg_start']} on {os.cpu_count()} CPUs",
          flush=True)
    rate = None  # wall seconds per rendered frame, measured on the first world built
    for n in [int(s) for s in args.sizes.split(",") if s]:
        repo = work / f"n{n}"
        per_scene = n // 2
        if args.unique_per_scene == "auto":
            projected = None if rate is None else rate * n
            unique = per_scene if projected is None or projected <= args.render_budget_s else min(per_scene, 100)
        else:
            projected, unique = None, int(args.unique_per_scene)
        if args.reuse_world and (repo / "data" / "dedupe" / "frames.csv").is_file():
            world = {"repro_dedupe_s": "reused"}
            if not args.no_dvc:
                world["dvc_status_s"] = [round(sh([str(Path(sys.executable).parent / "dvc"), "status"], repo), 2)
                                         for _ in range(2)]
        else:
            world = build_world(repo, n, args.gen_workers, not args.no_dvc, unique)
            if rate is None and world["rendered_per_scene"] >= min(per_scene, 50):
                rate = world["render_s_per_frame"]
        if projected is not None:
            world["projected_full_render_s"] = round(projected, 1)
        if world.get("rendered_per_scene", per_scene) < per_scene:
            note = (f"NOTE: the {n}-frame world renders {world['rendered_per_scene']} of {per_scene} frames per scene "
                    f"and repeats them (hard links + renumbered textgt rows)")
            if projected is not None:
                note += (f": rendering all {n} frames would take ~{projected / 60:.0f} min at the measured "
                         f"{rate:.2f} s/frame, over the --render-budget-s {args.render_budget_s:.0f} s")
            print(note + "; pass --unique-per-scene to render more", flush=True)
            world["note"] = note
        runs = []
        specs = [("local-1", "local", 1), ("local-2", "local", 2)] + ([] if args.no_dask else [("dask-2", "dask", 0)])
        for label, backend, w in specs:
            runs.append(measure({"repo": str(repo), "label": label, "backend": backend, "workers": w,
                                 "out": str(work / "out"), "limit": args.limit, "dask_profile": args.dask_profile,
                                 "dask_malloc_trim": args.dask_malloc_trim}))
            print({k: v for k, v in runs[-1].items() if k != "digest"}, flush=True)
        ref = runs[0].pop("digest")
        for r in runs[1:]:
            r["identical_bytes"] = r.pop("digest") == ref
        base = runs[0]["seconds"]
        for r in runs:
            r["speedup_vs_1"] = round(base / r["seconds"], 2)
        results["sizes"][n] = {**world, "runs": runs}
        print(json.dumps({n: results["sizes"][n]}, indent=1), flush=True)
    sizes = sorted(results["sizes"])
    if len(sizes) > 1:
        lo, hi = results["sizes"][sizes[0]]["runs"], results["sizes"][sizes[-1]]["runs"]
        results["rss_ratio_largest_vs_smallest"] = {a["backend"]: round(b["peak_rss_mib"] / a["peak_rss_mib"], 3)
                                                    for a, b in zip(lo, hi)}
    results["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print("\n| frames | backend | frames/s | speedup vs 1 worker | CPU ms/frame | peak RSS MiB (tree) | "
          "peak PSS MiB (tree) | load 1 min | identical bytes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for r in results["sizes"][n]["runs"]:
            print(f"| {n} | {r['backend']} | {r['frames_per_s']} | {r['speedup_vs_1']} | {r['cpu_ms_per_frame']} | "
                  f"{r['peak_rss_mib']} | {r.get('peak_pss_mib', 'n/a')} | {r['load_avg_1_5_15'][0]} | "
                  f"{r.get('identical_bytes', 'ref')} |")
    for n in sizes:
        s = results["sizes"][n]
        built = (f"rendered {s['rendered_per_scene']} per scene, render {s['render_s']} s, build (demo+ingest+dedupe) "
                 f"{s['repro_dedupe_s']} s" if "render_s" in s else "world reused")
        print(f"size {n}: {built}; dvc status {s.get('dvc_status_s', 'n/a')} s")
        if s.get("note"):
            print("  " + s["note"])
    if "rss_ratio_largest_vs_smallest" in results:
        print(f"peak RSS ratio {sizes[-1]} vs {sizes[0]} frames: {results['rss_ratio_largest_vs_smallest']}")
    print(f"machine: {results['machine']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
