"""Benchmarks for the Norton losses.

    .venv/bin/python tools/bench_norton.py                 # parts (i) and (iii) with the default sizes
    .venv/bin/python tools/bench_norton.py --parts i --problems 64 --size 32 --iters 200
    .venv/bin/python tools/bench_norton.py --parts iii --n 512   # smaller fine-grained memory run

(i)   Batched log-domain Sinkhorn (vidlang.losses.ot.sinkhorn_log) vs POT's ``ot.batch.solve_batch``
      (method="log_sinkhorn") vs a Python loop of ``ot.bregman.sinkhorn_log``: same problems, same fixed number of
      iterations (no early stop), median wall time, time ratios and the max difference of the plans.
(ii)  Norton step time / InfoNCE step time: ``bench_step_ratio`` — slot for the trainer (needs the model).
(iii) Peak memory of the fine-grained frame-word similarity, chunked vs naive (one block = the whole
      N x N x T x V tensor), forward pass under no_grad. Each variant runs in a fresh child process and reports
      the growth of its peak resident set size (``resource.getrusage(...).ru_maxrss`` high-water mark, read just
      before and after the call, inputs already allocated): a real measurement of every allocation torch made.
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


def bench_step_ratio() -> dict:
    """Part (ii): Norton training-step time / InfoNCE training-step time on the same model and batch.

    Not implemented here: it needs vidlang.models.DualEncoder and the training objective, which did not exist
    when this file was written. The trainer fills this slot.
    """
    raise NotImplementedError("bench_step_ratio (part ii) is added by the trainer once the model exists")


def _inputs(n: int, t: int, v: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    vt, tt = torch.randn(n, v, d, generator=g), torch.randn(n, t, d, generator=g)
    vm = torch.ones(n, v, dtype=torch.bool)
    tm = torch.rand(n, t, generator=g) > 0.3  # ragged captions
    tm[:, 0] = True
    return vt, tt, vm, tm


def _child_fine_grained(n: int, t: int, v: int, d: int, chunk: int) -> dict:
    """Runs in a fresh process: peak RSS growth (bytes) of one fine-grained similarity call."""
    from vidlang.losses.norton import fine_grained_similarity

    torch.set_num_threads(max(1, torch.get_num_threads()))
    vt, tt, vm, tm = _inputs(n, t, v, d)
    small = _inputs(4, t, v, d)
    with torch.no_grad():
        fine_grained_similarity(*small, chunk_size=2)  # load kernels / allocator before the baseline
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        out = fine_grained_similarity(vt, tt, vm, tm, chunk_size=chunk)
        dt = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"chunk": chunk, "peak_growth_bytes": (after - before) * 1024, "seconds": dt,
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


def bench_fine_grained_memory(n: int = 1024, t: int = 32, v: int = 18, d: int = 256, chunk: int = 64) -> dict:
    """Part (iii). Chunked vs naive peak memory, each in its own child process."""
    full_bytes = n * n * t * v * 4
    res = {"n": n, "t": t, "v": v, "d": d, "chunk": chunk, "naive_block_bytes": full_bytes}
    runs = {}
    for name, ck in (("chunked", chunk), ("naive", n)):
        # the naive variant holds ~3 full N*N*T*V float32 tensors at once; refuse rather than swap/OOM
        need = 4 * full_bytes if name == "naive" else 4 * chunk * chunk * t * v * 4 + n * n * 16
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
            print(f"    {name:8s} chunk={r['chunk']:5d}  peak growth {r['peak_growth_bytes'] / 2**20:9.1f} MiB  "
                  f"{r['seconds']:.2f} s")
    if runs.get("chunked") and runs.get("naive"):
        ratio = runs["chunked"]["peak_growth_bytes"] / max(1, runs["naive"]["peak_growth_bytes"])
        same = abs(runs["chunked"]["checksum"] - runs["naive"]["checksum"]) <= 1e-4 * abs(runs["naive"]["checksum"])
        res["ratio_chunked_over_naive"] = ratio
        print(f"    ratio chunked/naive = {ratio:.4f} (target <= 0.125); same values: {same}")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="i,iii", help="comma list of i, ii, iii")
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--epsilon", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--t", type=int, default=32)
    ap.add_argument("--v", type=int, default=18)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=64)
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
        results["step_ratio"] = bench_step_ratio()
    if "iii" in parts:
        results["fine_grained_memory"] = bench_fine_grained_memory(args.n, args.t, args.v, args.d, args.chunk)
    if args.json:
        from vidlang.io import atomic_write_json

        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
