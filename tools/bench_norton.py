"""Benchmarks for the Norton losses.

    .venv/bin/python tools/bench_norton.py                 # parts (i), (ii) and (iii) with the default sizes
    .venv/bin/python tools/bench_norton.py --parts i --problems 64 --size 32 --iters 200
    .venv/bin/python tools/bench_norton.py --parts iii --n 512   # smaller fine-grained memory run

(i)   Batched log-domain Sinkhorn (vidlang.losses.ot.sinkhorn_log) vs POT's ``ot.batch.solve_batch``
      (method="log_sinkhorn") vs a Python loop of ``ot.bregman.sinkhorn_log``: same problems, same fixed number of
      iterations (no early stop), median wall time, time ratios and the max difference of the plans.
(ii)  Norton training-step time / InfoNCE training-step time on the demo model (tools/bench_train_step.py: same
      model and batch, objectives alternating, median step times); target <= 1.3. Then the same ratio through
      the real trainer (DataLoader, sampling and tokenising, bookkeeping), which must not raise it.
(iii) Peak memory of the fine-grained frame-word similarity, chunked (automatic blocks under the entry budget,
      or --chunk videos x texts per block) vs naive (one block = every real word x all N x V frames, i.e. the
      whole N x N x T x V problem at once), forward pass under no_grad. Each variant runs in a fresh child process
      and reports the growth of its peak resident set size (VmHWM high-water mark of /proc/self/status, else
      ``ru_maxrss``, read just before and after the call, inputs already allocated): a real measurement of every
      allocation torch made.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch


def _timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_sinkhorn(problems: int = 64, size: int = 32, iters: int = 200, epsilon: float = 0.1,
                   repeats: int = 5, seed: int = 0) -> dict:
    """Part (i). Returns timings (s), ratios and max plan differences; prints a small table."""
    import ot
    import ot.batch

    from vidlang.losses.ot import sinkhorn_log

    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(problems, size, size, generator=g)
    a = torch.full((problems, size), 1.0 / size)
    b = torch.full((problems, size), 1.0 / size)

    ours = lambda: sinkhorn_log(cost, a, b, epsilon=epsilon, n_iters=iters, tol=None)[0]  # noqa: E731
    pot_batch = lambda: ot.batch.solve_batch(cost, epsilon, a, b, max_iter=iters, tol=0.0,  # noqa: E731
                                             method="log_sinkhorn", grad="detach").plan

    def pot_loop():
        return torch.stack([ot.bregman.sinkhorn_log(a[i], b[i], cost[i], epsilon, numItermax=iters, stopThr=0.0,
                                                    warn=False) for i in range(problems)])

    t_ours, t_batch, t_loop = (_timeit(f, repeats) for f in (ours, pot_batch, pot_loop))
    p_ours, p_batch, p_loop = ours(), pot_batch(), pot_loop()
    res = {
        "problems": problems, "size": size, "iters": iters, "epsilon": epsilon, "threads": torch.get_num_threads(),
        "time_ours_s": t_ours, "time_pot_batch_s": t_batch, "time_pot_loop_s": t_loop,
        "ratio_pot_batch_over_ours": t_batch / t_ours, "ratio_pot_loop_over_ours": t_loop / t_ours,
        "maxdiff_vs_pot_batch": float((p_ours - p_batch).abs().max()),
        "maxdiff_vs_pot_loop": float((p_ours - p_loop).abs().max()),
    }
    print(f"(i) Sinkhorn, {problems} problems of {size}x{size}, {iters} iterations, eps={epsilon}, "
          f"{res['threads']} threads (median of {repeats})")
    print(f"    vidlang batched   {1e3 * t_ours:8.1f} ms")
    print(f"    ot.batch          {1e3 * t_batch:8.1f} ms   ratio {res['ratio_pot_batch_over_ours']:.2f}x   "
          f"max |plan diff| {res['maxdiff_vs_pot_batch']:.2e}")
    print(f"    POT loop          {1e3 * t_loop:8.1f} ms   ratio {res['ratio_pot_loop_over_ours']:.2f}x   "
          f"max |plan diff| {res['maxdiff_vs_pot_loop']:.2e}")
    return res


def bench_step_ratio(videos: int = 16, clips: int = 8, repeats: int = 10, threads: int | None = None) -> dict:
    """Part (ii): Norton training-step time / InfoNCE training-step time on the same model and batch.

    Runs tools/bench_train_step.py's ``bench_step_ratio`` in this process (demo config, random features).
    """
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_train_step import bench_step_ratio as step_ratio

    from bench_train_step import bench_trainer_ratio

    res = step_ratio(batch_videos=videos, clips=clips, repeats=repeats, threads=threads)
    print(f"(ii) training step, demo model, {videos} videos x {clips} clips, {res['threads']} threads "
          f"(median of {repeats}, objectives alternating)")
    print(f"    infonce           {1e3 * res['infonce_s']:8.1f} ms")
    print(f"    norton            {1e3 * res['norton_s']:8.1f} ms   ratio norton/infonce {res['ratio']:.2f} "
          f"(target <= 1.3)")
    whole = bench_trainer_ratio(threads=threads)
    print(f"    through the trainer (DataLoader, bookkeeping; {whole['steps']} steps x {whole['rounds']} rounds): "
          f"infonce {1e3 * whole['infonce_s']:.1f} ms, norton {1e3 * whole['norton_s']:.1f} ms, ratio "
          f"{whole['ratio']:.2f}")
    res["trainer"] = whole
    return res


def _inputs(n: int, t: int, v: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    vt, tt = torch.randn(n, v, d, generator=g), torch.randn(n, t, d, generator=g)
    vm = torch.ones(n, v, dtype=torch.bool)
    tm = torch.rand(n, t, generator=g) > 0.3  # ragged captions
    tm[:, 0] = True
    return vt, tt, vm, tm


def _peak_rss_bytes() -> int:
    """This process's peak RSS. Linux: VmHWM of /proc/self/status, the high-water mark of this process's own
    address space. ru_maxrss is not used there: it also counts the RSS the parent had when it forked this child
    (e.g. the whole model after part (ii)), which would hide the growth."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child_fine_grained(n: int, t: int, v: int, d: int, chunk: int | None) -> dict:
    """Runs in a fresh process: peak RSS growth (bytes) of one fine-grained similarity call."""
    from vidlang.losses.norton import fine_grained_similarity

    torch.set_num_threads(max(1, torch.get_num_threads()))
    vt, tt, vm, tm = _inputs(n, t, v, d)
    small = _inputs(4, t, v, d)
    with torch.no_grad():
        fine_grained_similarity(*small, chunk_size=2)  # load kernels / allocator before the baseline
        before = _peak_rss_bytes()
        t0 = time.perf_counter()
        out = fine_grained_similarity(vt, tt, vm, tm, chunk_size=chunk)
        dt = time.perf_counter() - t0
        after = _peak_rss_bytes()
    return {"chunk": chunk, "peak_growth_bytes": after - before, "seconds": dt,
            "checksum": float(out.double().sum())}


def _mem_available() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def bench_fine_grained_memory(n: int = 1024, t: int = 32, v: int = 18, d: int = 256,
                              chunk: int | None = None) -> dict:
    """Part (iii). Chunked vs naive peak memory, each in its own child process."""
    full_bytes = n * n * t * v * 4
    res = {"n": n, "t": t, "v": v, "d": d, "chunk": chunk, "naive_block_bytes": full_bytes}
    runs = {}
    for name, ck in (("chunked", chunk), ("naive", n)):
        # the naive variant holds ~3 full N*N*T*V float32 tensors at once; refuse rather than swap/OOM
        need = 4 * full_bytes if name == "naive" else 4 * 4 * (1 << 24) + n * n * 16
        avail = _mem_available()
        if avail and need > 0.7 * avail:
            print(f"(iii) skip {name}: needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available "
                  f"(use a smaller --n)")
            runs[name] = None
            continue
        cmd = [sys.executable, os.path.abspath(__file__), "--_child", json.dumps([n, t, v, d, ck])]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(
                                 os.path.abspath(__file__)))})
        runs[name] = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(runs)
    print(f"(iii) fine-grained similarity N={n}, T={t}, V={v}, D={d} (forward, no_grad); "
          f"one full N*N*T*V float32 tensor = {full_bytes / 2**20:.0f} MiB")
    for name, r in runs.items():
        if r:
            chunk = "auto" if r["chunk"] is None else str(r["chunk"])
            print(f"    {name:8s} chunk={chunk:>5s}  peak growth {r['peak_growth_bytes'] / 2**20:9.1f} MiB  "
                  f"{r['seconds']:.2f} s")
    if runs.get("chunked") and runs.get("naive"):
        ratio = runs["chunked"]["peak_growth_bytes"] / max(1, runs["naive"]["peak_growth_bytes"])
        same = abs(runs["chunked"]["checksum"] - runs["naive"]["checksum"]) <= 1e-4 * abs(runs["naive"]["checksum"])
        res["ratio_chunked_over_naive"] = ratio
        print(f"    ratio chunked/naive = {ratio:.4f} (target <= 0.125); same values: {same}")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="i,ii,iii", help="comma list of i, ii, iii")
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--epsilon", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--t", type=int, default=32)
    ap.add_argument("--v", type=int, default=18)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=None, help="videos x texts per block (default: automatic)")
    ap.add_argument("--videos", type=int, default=16, help="part (ii): videos per batch")
    ap.add_argument("--clips", type=int, default=8, help="part (ii): clips per video")
    ap.add_argument("--threads", type=int, default=None, help="part (ii): torch threads (default: unchanged)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        print(json.dumps(_child_fine_grained(*json.loads(args._child))))
        return 0
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"i", "ii", "iii"}
    if unknown:
        ap.error(f"--parts: unknown part(s) {sorted(unknown)}; choose from i, ii, iii")
    results = {}
    if "i" in parts:
        results["sinkhorn"] = bench_sinkhorn(args.problems, args.size, args.iters, args.epsilon, args.repeats)
    if "ii" in parts:
        results["step_ratio"] = bench_step_ratio(args.videos, args.clips, args.repeats, args.threads)
    if "iii" in parts:
        results["fine_grained_memory"] = bench_fine_grained_memory(args.n, args.t, args.v, args.d, args.chunk)
    if args.json:
        from vidlang.io import atomic_write_json

        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
