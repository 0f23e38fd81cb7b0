"""Narration alignment: HTM-Align-style recall and relevance AUC of several aligners against the raw timestamps.

Besides the raw-timestamp recall, `baselines.timestamps.auc_ot_mass` is the relevance AUC of the OT aligner run
with *no content* (timing alone): on the synthetic corpus the position of a line among its neighbours already
separates chatter somewhat (~60), so a model's OT-mass AUC must be read against it. The aligners'
hyper-parameters are chosen on the *training* split's ground truth (recorded under "hyperparameters");
HTM-Align (a test set) uses the configured defaults behind a label-free gate. Recall on HTM-Align follows TAN's
rule (floor(start) <= predicted second <= ceil(end)); on the synthetic corpus the predicted time must lie in the
step.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vidlang.datasets.alignment_truth import load_alignment_truth
from vidlang.errors import VidlangError
from vidlang.eval import alignment as al
from vidlang.eval.capabilities import Embeds, line_similarity, store_fps
from vidlang.eval.registry import register_task


def _problems(embedder: Embeds, store, truth: dict, which: str, fps: float, limit: int | None = None):
    """[(video id, AlignVideo)] of the `which` split's videos with narration and features; and the count of
    such videos missing from the store."""
    out, missing = [], 0
    for vid in sorted(truth):
        rec = truth[vid]
        if rec["split"] != which or not rec["texts"]:
            continue
        if vid not in store:
            missing += 1
            continue
        if limit is not None and len(out) >= limit:
            break
        sim = line_similarity(embedder, store[vid], rec["texts"], fps)
        out.append((vid, al.AlignVideo(sim, np.asarray(rec["starts"], np.float64),
                                       np.asarray(rec["ends"], np.float64), rec["intervals"])))
    return out, missing


def _choose_params(embedder: Embeds, store, truth: dict, fps: float, acfg, ground_truth: str):
    """The aligner's hyper-parameters: grid-searched on `tune_split` ground truth when it has videos, else the
    configured defaults. -> (AlignerParams, record for "hyperparameters")."""
    params = al.AlignerParams(acfg.content_weight, acfg.content_threshold, acfg.prior_scale, acfg.skip_penalty)
    params.validate()
    hyper = {"values": al.params_dict(params), "source": "defaults (no training ground truth used)"}
    if not acfg.tune:
        return params, hyper
    train, _ = _problems(embedder, store, truth, acfg.tune_split, fps, acfg.tune_max_videos)
    train = [v for _, v in train if any(iv is not None for iv in v.intervals)]
    if not train:
        return params, hyper
    grid = acfg.tune_grid()
    params, info = al.tune_params(train, fps, **grid)
    return params, {"values": al.params_dict(params),
                    "source": f"grid search of recall_dp on {len(train)} {acfg.tune_split!r} videos of "
                              f"{Path(ground_truth).name} (evaluation split not used)",
                    "tuning": {"videos": len(train), **{k: float(v) for k, v in info.items()}},
                    "grid": {k: [float(x) for x in v] for k, v in grid.items()}}


def _label_free_gate(embedder: Embeds, store, truth: dict, evaluated: list, fps: float, params, hyper: dict, acfg):
    """Untuned defaults only: keep the content term if lines tell their own video from another.

    The check is the ROC-AUC of a line's max similarity over its own video vs over another evaluated video, minus
    `gate_z` jackknife standard errors (over videos: a video's lines are not independent); content is used when
    it reaches `gate_min_auc` (z 3.09 and 50: above chance at one-sided 0.1%). Irrelevant lines cap this AUC, so a
    fixed bar on it would depend on how noisy the narration is. Failing sets content off (the aligners then return
    exactly the raw timestamps) and records it. -> the params to use.
    """
    own, other, video_of_line = [], [], []
    for i, (vid, v) in enumerate(evaluated):
        nxt = evaluated[(i + 1) % len(evaluated)][0]
        own += v.sim.max(dim=1).values.tolist()
        other += line_similarity(embedder, store[nxt], truth[vid]["texts"], fps).max(dim=1).values.tolist()
        video_of_line += [i] * v.sim.shape[0]
    # a line's other-video score belongs with its own video's lines: the same groups for both halves
    check, se = al.jackknife_auc(own, other, video_of_line * 2)
    lower = check - acfg.gate_z * se
    hyper["label_free_check"] = {"own_vs_other_video_auc": check, "jackknife_se": se, "z": acfg.gate_z,
                                 "lower_bound": lower, "min_auc": acfg.gate_min_auc}
    if lower >= acfg.gate_min_auc:
        return params
    hyper["values"] = al.params_dict(params := al.AlignerParams(0.0, params.content_threshold, params.prior_scale,
                                                                params.skip_penalty))
    hyper["source"] += "; content off: the model failed the label-free check"
    hyper["content_off"] = True
    return params


METHODS = ("timestamps", "argmax", "prior", "dp", "ot")


def _align_all(evaluated: list, fps: float, p, acfg, kind: str) -> dict:
    """Run every aligner on every evaluated video; -> hits per method and the per-line scores for the AUCs."""
    acc = {"hits": {m: [0, 0] for m in METHODS}, "relevant": [], "peak_z": [], "max_sim": [], "ot_mass": [],
           "ot_time_mass": [], "kept": []}
    for _, v in evaluated:
        sim, starts, ends, ivs = v.sim, v.starts, v.ends, v.intervals
        mids = al.timestamp_alignment(starts, ends)
        am = al.align_lines(sim, starts, ends, fps, prior_scale=math.inf)
        pr = al.align_lines(sim, starts, ends, fps, p.prior_scale, p.content_weight, p.content_threshold)
        dp = al.align_lines_dp(sim, starts, ends, fps, p)
        ot = al.align_lines_ot(sim, starts, ends, fps, p.prior_scale, p.content_weight, acfg.ot_bucket,
                               acfg.ot_epsilon, content_threshold=p.content_threshold)
        preds = {"timestamps": (np.clip(np.floor(mids * fps), 0, sim.shape[1] - 1).astype(np.int64), mids),
                 "argmax": (am.index, am.time), "prior": (pr.index, pr.time), "dp": (dp.index, dp.time),
                 "ot": (ot.index, ot.time)}
        for m, (idx, times) in preds.items():
            h, t = al.htm_align_recall(idx, ivs, fps) if kind == "htm_align" else al.alignment_recall(times, ivs)
            acc["hits"][m][0] += h
            acc["hits"][m][1] += t
        acc["relevant"] += [iv is not None for iv in ivs]
        acc["peak_z"] += pr.alignability.tolist()
        acc["max_sim"] += sim.max(dim=1).values.tolist()
        acc["ot_mass"] += ot.alignability.tolist()
        acc["kept"] += [bool(k) for k in dp.kept]
        # the same OT with no content: how much of the bucket's verdict comes from timing alone
        acc["ot_time_mass"] += al.align_lines_ot(sim, starts, ends, fps, p.prior_scale, 0.0, acfg.ot_bucket,
                                                 acfg.ot_epsilon).alignability.tolist()
    return acc


def run_alignment(embedder: Embeds, store, ground_truth: str, acfg) -> dict:
    """HTM-Align-style recall and relevance AUC of several aligners against the raw timestamps.

    Ground truth: the synthetic ground_truth.json (recall: predicted time inside the line's true step) or
    HTM-Align (+ `acfg.captions` with the ASR timestamps; recall: TAN's rule on the predicted second index).
    Methods: "argmax" (content only), "prior" (per line, content + interval time prior), "dp" (monotonic DP,
    the recommended aligner), "ot" (OT with the prompt bucket). With `acfg.tune`, the aligner's hyper-parameters
    are chosen by grid search of the DP's recall on videos of `tune_split` (never the evaluated split); without
    such videos (HTM-Align is a test set) the configured defaults are used behind a label-free gate
    (`_label_free_gate`). `acfg` is a vidlang.eval.config.AlignmentConfig; the choice is stored in
    "hyperparameters".
    """
    if acfg.tune and acfg.tune_split == acfg.split:
        raise VidlangError(f"alignment: tune_split and split are both {acfg.split!r}; tune on training videos only")
    kind, truth, extra_counts = load_alignment_truth(ground_truth, acfg.captions, acfg.format)
    fps = store_fps(store)
    params, hyper = _choose_params(embedder, store, truth, fps, acfg, ground_truth)
    evaluated, missing = _problems(embedder, store, truth, acfg.split, fps)
    if not evaluated:
        raise VidlangError(f"{ground_truth}: no {acfg.split} video with narration is in the feature store {store.root}")
    if hyper["source"].startswith("defaults") and params.content_weight > 0 and len(evaluated) > 1:
        params = _label_free_gate(embedder, store, truth, evaluated, fps, params, hyper, acfg)
    acc = _align_all(evaluated, fps, params, acfg, kind)
    hits, rel = acc["hits"], acc["relevant"]
    metrics = {f"recall_{m}": 100.0 * h / max(t, 1) for m, (h, t) in hits.items() if m != "timestamps"}
    base = {"timestamps": {"recall": 100.0 * hits["timestamps"][0] / max(hits["timestamps"][1], 1)},
            "chance": {"auc": 50.0}}
    if 0 < sum(rel) < len(rel):
        metrics.update({f"auc_{k}": al.roc_auc(acc[k], rel) for k in ("peak_z", "max_sim", "ot_mass")})
        base["timestamps"]["auc_ot_mass"] = al.roc_auc(acc["ot_time_mass"], rel)
    rule = ("TAN's rule floor(start) <= predicted second <= ceil(end)" if kind == "htm_align"
            else "predicted time inside the true step")
    if hyper.get("content_off"):  # say it where the numbers are printed: every aligner here IS the timestamps
        chk = hyper["label_free_check"]
        rule += (f"; CONTENT OFF (label-free check: AUC {chk['own_vs_other_video_auc']:.1f} - {chk['z']:g} x SE "
                 f"{chk['jackknife_se']:.2f} < {chk['min_auc']:g}): the aligners return the raw timestamps")
    return {"metrics": metrics, "baselines": base,
            "counts": {"videos": len(evaluated), "lines": len(rel), "relevant_lines": int(sum(rel)),
                       "missing_videos": missing, "dp_lines_out_of_chain": sum(not k for k in acc["kept"]),
                       **extra_counts},
            "hyperparameters": hyper,
            "protocol": f"{acfg.split} videos of {Path(ground_truth).name} ({kind}); recall: {rule}; "
                        f"recommended aligner: dp (monotonic, interval prior, thresholded content)"}


@register_task("alignment", data=("ground_truth", "features"))
def alignment(embedder: Embeds, cfg, stores) -> dict:
    return run_alignment(embedder, stores.get(cfg.data.features), cfg.data.ground_truth, cfg.alignment)
