"""`vidlang synth OUT`: the synthetic world of long, noisily narrated instructional videos (the embedded corpus).

World. Objects (6 colours x 4 shapes) perform actions (move left/right/up/down, grow, shrink, blink, rotate).
A step is an (object, action) pair with one canonical sentence ("move the red square to the left") and a global
1-based id; a task is a fixed ordered list of 4-6 steps over 2-3 objects. A video shows one task's steps in
order (one step skipped in ~10% of videos), separated by background (~60% of the time: objects idle, jittering,
or a grey distractor drifting; never an action). During a step the acting object performs at the centre of the
frame while the others wait at home around it: with 8x8-grid per-second features a supervised probe on 160
videos reached 0.83 step accuracy on held-out step seconds and 0.98 step-vs-background accuracy, against 0.21 and
0.85 when objects acted at their home positions (measured on this generator).

Narration is noisy like YouTube ASR: per-step timestamp shifts (heavy-tailed), unnarrated steps, irrelevant
chatter from a compositional template space, filler words and paraphrases inside relevant lines, lines of
2-4 s at ~2.4 words/s, and rolling-caption line repetition in the captions file only. `--clean` zeroes every
narration noise (the videos stay the same: pixels and narration use independent random streams).

Determinism: video i is a function of (seed, i) only (its own random generators), so annotations are
byte-identical and decoded frames identical whatever `--workers` is, and whatever the number of videos (except
the train/val split, which is a permutation of all indices). Each MP4 carries a hash of its render spec in its
`comment` tag; re-running into the same OUT skips up-to-date files and re-renders stale ones.

Output layout and the ground_truth.json schema: docs/interfaces.md ("Synthetic corpus").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from vidlang.config import from_dict, read_yaml, to_dict
from vidlang.synth import text as T
from vidlang.synth.render import render_job
from vidlang.errors import ConfigError
from vidlang.io import atomic_write_json, atomic_write_text

GT_VERSION = 1

# Independent random streams per purpose, so e.g. changing a narration dial never changes the pixels.
_S_WORLD, _S_PLAN, _S_RENDER, _S_NARRATION, _S_SPLIT, _S_MSRVTT = 0, 1, 2, 3, 4, 5

TASK_VERBS = ["Animate", "Arrange", "Tidy", "Wake", "Shuffle", "Sort", "Exercise", "Calibrate", "Warm Up", "Show Off"]


@dataclass
class SynthConfig:
    """All dials of the synthetic world. Defaults: the 400-video world the demo learns from (64x64, 5 fps)."""

    videos: int = 400  # several hundred videos are needed before learning from noisy narration shows
    seed: int = 0
    size: int = 64  # frame side in pixels (square, even: yuv420p)
    fps: int = 5  # per-second features need only a few frames per second
    min_duration: int = 46  # video length range in whole seconds (HowTo100M-like long videos, scaled down)
    max_duration: int = 110
    step_min: int = 4  # step length range in whole seconds ("a few seconds")
    step_max: int = 9  # 4-9 s steps leave ~58% of the time to background
    tasks: int = 16  # number of tasks (fixed ordered step lists)
    min_steps: int = 4  # steps per task
    max_steps: int = 6
    skip_prob: float = 0.1  # probability that a video skips one of its task's steps (world variation, not noise)
    distractor_prob: float = 0.5  # probability that a video has an extra object that never acts
    noise_std: float = 3.0  # Gaussian pixel noise (uint8 levels) on every frame
    # --- narration noise (all zero with --clean) ---
    offset_std: float = 3.0  # std (s) of the shift between a step and its narration
    offset_mean: float = 0.0  # mean shift (s); negative = narration before the action
    offset_tail_df: float = 4.0  # Student-t degrees of freedom of the shift (heavy tail: ~8% beyond 5 s at std 3)
    unnarrated_frac: float = 0.15  # fraction of steps nobody talks about
    irrelevant_frac: float = 0.3  # fraction of ASR lines that are chatter/filler
    filler_rate: float = 0.1  # filler words ("um", "you know") per word of a relevant line
    paraphrase_rate: float = 0.3  # per slot (frame, verb, noun, ...) probability of leaving the canonical word
    rolling_rate: float = 0.15  # fraction of caption lines that repeat the previous line's tail (captions only)
    words_per_second: float = 2.4  # FORMATS.md: HowTo100M ~2.4 tokens/s
    line_min_s: float = 2.0  # ASR line length range (FORMATS.md: mean ~3 s)
    line_max_s: float = 4.0
    # --- splits and derived benchmarks ---
    val_frac: float = 0.2
    msrvtt_clips: int = 100  # step clips cut from validation videos for MSR-VTT-style retrieval / QA
    crf: int = 23  # x264 quality
    gop_s: float = 2.0  # keyframe interval (s): short enough for fast seeking (decord is slow on long GOPs)
    NOISE_FIELDS: ClassVar[tuple] = ("offset_std", "offset_mean", "unnarrated_frac", "irrelevant_frac",
                                     "filler_rate", "paraphrase_rate", "rolling_rate")

    def validate(self) -> None:
        if self.videos < 1:
            raise ValueError(f"videos must be >= 1, got {self.videos}")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even number >= 16 (yuv420p), got {self.size}")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be in 1..60, got {self.fps}")
        if not 1 <= self.min_duration <= self.max_duration:
            raise ValueError(f"need 1 <= min_duration <= max_duration, got {self.min_duration}, {self.max_duration}")
        if not 1 <= self.step_min <= self.step_max:
            raise ValueError(f"need 1 <= step_min <= step_max, got {self.step_min}, {self.step_max}")
        if not 2 <= self.min_steps <= self.max_steps <= 8:
            raise ValueError(f"need 2 <= min_steps <= max_steps <= 8, got {self.min_steps}, {self.max_steps}")
        if self.tasks < 1:
            raise ValueError(f"tasks must be >= 1, got {self.tasks}")
        for name in ("skip_prob", "distractor_prob", "unnarrated_frac", "filler_rate", "paraphrase_rate",
                     "rolling_rate", "val_frac"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if not 0.0 <= self.irrelevant_frac < 0.95:
            raise ValueError(f"irrelevant_frac must be in [0, 0.95), got {self.irrelevant_frac}")
        if self.offset_std < 0 or self.noise_std < 0:
            raise ValueError("offset_std and noise_std must be >= 0")
        if self.offset_tail_df != 0 and self.offset_tail_df <= 2:
            raise ValueError(f"offset_tail_df must be > 2 (finite variance) or 0 (Gaussian), got {self.offset_tail_df}")
        if self.words_per_second <= 0 or not 0 < self.line_min_s <= self.line_max_s:
            raise ValueError("need words_per_second > 0 and 0 < line_min_s <= line_max_s")
        if self.msrvtt_clips < 0 or self.gop_s <= 0 or not 0 <= self.crf <= 51:
            raise ValueError("need msrvtt_clips >= 0, gop_s > 0, 0 <= crf <= 51")

    def clean(self) -> SynthConfig:
        """Same world and videos, narration noise switched off (exact canonical sentences inside their steps)."""
        return dataclasses.replace(self, **{k: 0.0 for k in self.NOISE_FIELDS})


def _config_dict(cfg: SynthConfig) -> dict:
    return to_dict(cfg)  # recorded in ground_truth.json; the worker count is not a config field on purpose


# --- the world ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    id: int  # global, 1-based
    colour: str
    shape: str
    action: str

    @property
    def sentence(self) -> str:
        return T.canonical_sentence(self.colour, self.shape, self.action)


@dataclass(frozen=True)
class Task:
    id: str
    name: str
    objects: tuple  # ((colour, shape), ...)
    steps: tuple  # global step ids in canonical order


@dataclass(frozen=True)
class World:
    steps: dict  # int -> Step
    tasks: tuple  # Task, ...


def build_world(cfg: SynthConfig) -> World:
    """Tasks and global steps, deterministic per seed (independent of the number of videos)."""
    rng = np.random.default_rng([cfg.seed, _S_WORLD])
    colours, shapes = list(T.COLOURS), list(T.SHAPES)
    step_ids: dict[tuple, int] = {}
    tasks: list[Task] = []
    seen_sig, seen_names = set(), set()
    while len(tasks) < cfg.tasks:
        n_obj = int(rng.integers(2, 4))
        objs = [(colours[c], shapes[int(rng.integers(len(shapes)))])
                for c in rng.choice(len(colours), n_obj, replace=False)]
        n_steps = int(rng.integers(cfg.min_steps, cfg.max_steps + 1))
        pairs = [(o, a) for o in range(n_obj) for a in T.ACTIONS if T.valid_step(objs[o][1], a)]
        # Every object acts at least once; the rest are random distinct (object, action) pairs.
        chosen = []
        for o in range(n_obj):
            own = [p for p in pairs if p[0] == o]
            chosen.append(own[int(rng.integers(len(own)))])
        rest = [p for p in pairs if p not in chosen]
        for i in rng.choice(len(rest), n_steps - n_obj, replace=False):
            chosen.append(rest[int(i)])
        # Prefer an order in which consecutive steps use different objects (clearer step boundaries).
        order = list(rng.permutation(len(chosen)))
        for _ in range(30):
            if all(chosen[a][0] != chosen[b][0] for a, b in zip(order, order[1:])):
                break
            order = list(rng.permutation(len(chosen)))
        seq = tuple((objs[chosen[i][0]][0], objs[chosen[i][0]][1], chosen[i][1]) for i in order)
        if seq in seen_sig:
            continue
        seen_sig.add(seq)
        verb = TASK_VERBS[int(rng.integers(len(TASK_VERBS)))]
        name = f"{verb} " + " And ".join(f"{c.title()} {s.title()}" for c, s in objs)
        base, k = name, 2
        while name in seen_names:
            name, k = f"{base} {k}", k + 1
        seen_names.add(name)
        ids = []
        for key in seq:
            if key not in step_ids:
                step_ids[key] = len(step_ids) + 1
            ids.append(step_ids[key])
        tasks.append(Task(id=str(101 + len(tasks)), name=name, objects=tuple(objs), steps=tuple(ids)))
    steps = {i: Step(i, c, s, a) for (c, s, a), i in step_ids.items()}
    return World(steps=dict(sorted(steps.items())), tasks=tuple(tasks))


# --- one video's plan (what happens when) -------------------------------------------------------------------------


_HOME_CELLS = (0, 1, 2, 3, 5, 6, 7, 8)
_HOME_COORD = (0.15, 0.5, 0.85)


def video_id(index: int) -> str:
    return f"syn{index:05d}"


def _split_integer(total: int, weights: np.ndarray) -> list[int]:
    """Largest-remainder split of an integer total in proportion to weights."""
    raw = weights / weights.sum() * total
    out = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - out), kind="stable")[: total - int(out.sum())]:
        out[i] += 1
    return [int(x) for x in out]


def plan_video(cfg: SynthConfig, world: World, index: int) -> dict:
    """Task, duration, step times (whole seconds) and the render spec of video `index`; a function of (seed, index).

    Returns {"video_id", "task_id", "duration", "steps": [{"step_id", "order", "start", "end"}], "spec"}.
    """
    rng = np.random.default_rng([cfg.seed, _S_PLAN, index])
    task = world.tasks[int(rng.integers(len(world.tasks)))]
    orders = list(range(len(task.steps)))
    if len(orders) > 2 and rng.random() < cfg.skip_prob:
        orders.pop(int(rng.integers(len(orders))))
    durs = [int(d) for d in rng.integers(cfg.step_min, cfg.step_max + 1, size=len(orders))]
    duration = int(rng.integers(cfg.min_duration, cfg.max_duration + 1))
    # Keep at least a quarter of the video as background; shorten (then drop trailing) steps if they do not fit.
    cap = max(1, int(duration * 0.75))
    if sum(durs) > cap:
        durs = [max(1, int(d * cap / sum(durs))) for d in durs]
        while sum(durs) > cap and len(durs) > 1:
            durs.pop()
            orders.pop()
    gaps = _split_integer(duration - sum(durs), rng.dirichlet(np.full(len(durs) + 1, 1.5)))
    # Objects: the task's, plus sometimes one idle extra.
    objs = list(task.objects)
    if rng.random() < cfg.distractor_prob:
        others = [(c, s) for c in T.COLOURS for s in T.SHAPES if (c, s) not in objs]
        objs.append(others[int(rng.integers(len(others)))])
    # Homes: distinct outer cells of a 3x3 grid (the centre is the stage where steps happen), near the border so
    # that a step's motion at the centre never touches them.
    cells = [_HOME_CELLS[int(i)] for i in rng.choice(len(_HOME_CELLS), len(objs), replace=False)]
    objects = [{"rgb": list(T.COLOURS[c]), "shape": s,
                "x": round(_HOME_COORD[cell % 3] + float(rng.uniform(-0.01, 0.01)), 4),
                "y": round(_HOME_COORD[cell // 3] + float(rng.uniform(-0.01, 0.01)), 4)}
               for (c, s), cell in zip(objs, cells)]
    segments, steps, t = [], [], 0
    for k in range(len(durs) + 1):
        if gaps[k] > 0:
            mode = ["idle", "jitter", "distractor"][int(rng.choice(3, p=[0.35, 0.35, 0.3]))]
            seg = {"start": t, "end": t + gaps[k], "kind": "background", "mode": mode, "distractor": None}
            if mode == "distractor":
                x0, y0 = (float(v) for v in rng.uniform(0.15, 0.85, 2))
                ang = float(rng.uniform(0, 2 * math.pi))
                seg["distractor"] = {"shape": T.SHAPES[int(rng.integers(len(T.SHAPES)))],
                                     "x0": round(x0, 4), "y0": round(y0, 4),
                                     "x1": round(x0 + 0.15 * math.cos(ang), 4),
                                     "y1": round(y0 + 0.15 * math.sin(ang), 4)}
            segments.append(seg)
            t += gaps[k]
        if k < len(durs):
            sid = task.steps[orders[k]]
            st = world.steps[sid]
            obj = objs.index((st.colour, st.shape))
            segments.append({"start": t, "end": t + durs[k], "kind": "step", "object": obj, "action": st.action})
            steps.append({"step_id": sid, "order": orders[k], "start": float(t), "end": float(t + durs[k])})
            t += durs[k]
    assert t == duration
    spec = {"video_id": video_id(index), "size": cfg.size, "fps": cfg.fps, "n_frames": duration * cfg.fps,
            "bg": [int(v) for v in rng.integers(15, 60, 3)], "noise_std": cfg.noise_std, "crf": cfg.crf,
            "gop": max(1, int(round(cfg.gop_s * cfg.fps))), "render_seed": [cfg.seed, _S_RENDER, index],
            "objects": objects, "segments": segments}
    return {"video_id": video_id(index), "task_id": task.id, "duration": float(duration), "steps": steps,
            "spec": spec}


# --- narration ---------------------------------------------------------------------------------------------------


def _offset(rng: np.random.Generator, cfg: SynthConfig) -> float:
    if cfg.offset_std <= 0:
        return cfg.offset_mean
    if cfg.offset_tail_df:
        df = cfg.offset_tail_df
        z = float(rng.standard_t(df)) / math.sqrt(df / (df - 2))  # unit variance, heavier tail than Gaussian
    else:
        z = float(rng.standard_normal())
    return cfg.offset_mean + cfg.offset_std * max(-5.0, min(5.0, z))


def narration_for(plan: dict, world: World, cfg: SynthConfig, index: int) -> tuple[list[dict], dict]:
    """Clean ASR lines of one video (ground truth, no rolling duplicates) and its raw noise counts.

    Lines: [{"start", "end", "text", "relevant", "step" (index into plan["steps"]) | None, "kind"}], sorted by
    start, non-overlapping, inside [0, duration]. A step utterance is centred on its step's midpoint plus a
    heavy-tailed offset, then utterances are laid out in order without overlap (one speaker), which can push
    a line further than its sampled offset; the realised offsets are what the stats report.
    """
    rng = np.random.default_rng([cfg.seed, _S_NARRATION, index])
    duration = plan["duration"]
    wps = cfg.words_per_second
    utts: list[T.Utterance] = []
    counts = {"steps": len(plan["steps"]), "unnarrated": 0, "content_words": 0, "fillers": 0,
              "paraphrased": 0, "narrated": 0}
    line_words: list[list[list[str]]] = []
    for k, st in enumerate(plan["steps"]):
        if rng.random() < cfg.unnarrated_frac:
            counts["unnarrated"] += 1
            continue
        step = world.steps[st["step_id"]]
        text = T.paraphrase(step.colour, step.shape, step.action, rng, cfg.paraphrase_rate)
        counts["paraphrased"] += int(text != step.sentence)
        content = text.split()
        words, n_fill = T.add_fillers(content, rng, cfg.filler_rate)
        counts["fillers"] += n_fill
        counts["content_words"] += len(content)
        counts["narrated"] += 1
        # A speaker squeezes a long sentence into a short step rather than spilling (keeps --clean exact).
        dur = min(len(words) / wps * float(rng.uniform(0.9, 1.1)), st["end"] - st["start"])
        mid = (st["start"] + st["end"]) / 2 + _offset(rng, cfg)
        utts.append(T.Utterance(words, "step", k, mid - dur / 2, dur))
        line_words.append(T.split_lines(words, rng, wps, cfg.line_min_s, cfg.line_max_s))
    n_rel = sum(len(lw) for lw in line_words)
    f = cfg.irrelevant_frac
    n_irr = int(rng.poisson(n_rel * f / (1 - f))) if f > 0 else 0
    if f > 0 and n_rel == 0:
        n_irr = max(n_irr, 1)
    made = 0
    while made < n_irr:
        if rng.random() < 0.2:
            words, kind = T.filler_line(rng).split(), "filler"
            lines = [words]
        else:
            # Resample a few times for a sentence that fits the remaining line budget, so the realised
            # irrelevant fraction tracks the dial instead of overshooting by a line per video.
            for _ in range(8):
                words, kind = T.chatter_sentence(rng).split(), "chatter"
                lines = T.split_lines(words, rng, wps, cfg.line_min_s, cfg.line_max_s)
                if len(lines) <= n_irr - made:
                    break
        dur = len(words) / wps * float(rng.uniform(0.9, 1.1))
        start = float(rng.uniform(0, max(0.0, duration - dur)))
        utts.append(T.Utterance(words, kind, None, start, dur))
        line_words.append(lines)
        made += len(lines)
    # Lay out: one speaker, so utterances never overlap; then pull the tail back inside the video.
    order = sorted(range(len(utts)), key=lambda i: (utts[i].target_start, i))
    # Too much speech for the video (tiny durations): drop chatter from the end until it fits.
    while sum(utts[i].duration for i in order) > duration and any(utts[i].kind != "step" for i in order):
        drop = max(i for i in order if utts[i].kind != "step")
        order.remove(drop)
    starts: dict[int, float] = {}
    prev_end = 0.0
    for i in order:
        s = max(utts[i].target_start, prev_end)
        starts[i] = s
        prev_end = s + utts[i].duration
    limit = duration
    for i in reversed(order):
        if starts[i] + utts[i].duration > limit:
            starts[i] = max(0.0, limit - utts[i].duration)
        limit = starts[i]
    lines_out = []
    offsets = []
    for i in order:
        u = utts[i]
        s, total = starts[i], max(1, len(u.words))
        t0 = s
        for ln in line_words[i]:
            t1 = t0 + u.duration * len(ln) / total
            lines_out.append({"start": round(t0, 2), "end": round(min(t1, duration), 2), "text": " ".join(ln),
                              "relevant": u.kind == "step", "step": u.step, "kind": u.kind})
            t0 = t1
        if u.kind == "step":
            st = plan["steps"][u.step]
            offsets.append(s + u.duration / 2 - (st["start"] + st["end"]) / 2)
    lines_out.sort(key=lambda ln: (ln["start"], ln["end"]))
    counts["offsets"] = offsets
    return lines_out, counts


def rolling_captions(lines: list[dict], cfg: SynthConfig, index: int) -> tuple[dict, int]:
    """HowTo100M raw_caption entry {"start", "end", "text"} from clean lines, with YouTube rolling repetition.

    With probability `rolling_rate` a line starts with the last 1-3 words of the previous line, and starts that
    many words earlier (never before the previous line's start); with a third of that probability a short line
    that is a pure suffix of the previous line is inserted after it. Returns (entry, number of rolled lines).
    """
    rng = np.random.default_rng([cfg.seed, _S_NARRATION, index, 1])
    start, end, text = [], [], []
    rolled = 0
    prev = None
    for ln in lines:
        s, e, t = ln["start"], ln["end"], ln["text"]
        if prev is not None and cfg.rolling_rate > 0:
            pw = prev["text"].split()
            if rng.random() < cfg.rolling_rate:
                k = int(rng.integers(1, min(3, len(pw)) + 1))
                t = " ".join(pw[-k:]) + " " + t
                s = round(max(prev["start"], s - k / cfg.words_per_second), 2)
                rolled += 1
            elif rng.random() < cfg.rolling_rate / 3:
                k = int(rng.integers(1, min(3, len(pw)) + 1))
                start.append(round(max(prev["start"], prev["end"] - k / cfg.words_per_second), 2))
                end.append(round(min(s, prev["end"] + 0.3), 2) if s > prev["end"] else prev["end"])
                text.append(" ".join(pw[-k:]))
                rolled += 1
        start.append(s)
        end.append(e)
        text.append(t)
        prev = ln
    return {"start": start, "end": end, "text": text}, rolled


# --- benchmark files ------------------------------------------------------------------------------------------------


def _hms(sec: float) -> str:
    sec = int(round(sec))
    return f"{sec // 3600}:{sec % 3600 // 60:02d}:{sec % 60:02d}"


def _mc_candidates(step: Step, rng: np.random.Generator) -> list[str]:
    """The true sentence and 4 hard distractors (same object other action, same action other object, ...)."""
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up", "grow": "shrink", "shrink": "grow",
                "blink": "rotate", "rotate": "blink"}
    c, s, a = step.colour, step.shape, step.action
    true = T.canonical_sentence(c, s, a)
    out = [true]

    def add(cands):
        cands = [x for x in cands if T.valid_step(x[1], x[2]) and T.canonical_sentence(*x) not in out]
        if cands:
            out.append(T.canonical_sentence(*cands[int(rng.integers(len(cands)))]))

    add([(c, s, opposite[a])] if T.valid_step(s, opposite[a]) else [(c, s, x) for x in T.ACTIONS if x != a])
    add([(c, s, x) for x in T.ACTIONS if x != a])  # same object, another action
    add([(x, s, a) for x in T.COLOURS if x != c])  # same action and shape, other colour
    add([(c, x, a) for x in T.SHAPES if x != s])  # same action and colour, other shape
    while len(out) < 5:  # only if a category ran dry: any other valid step
        add([(x, y, z) for x in T.COLOURS for y in T.SHAPES for z in T.ACTIONS])
    return out


_QA_DOES = {"left": "moves to the left", "right": "moves to the right", "up": "moves up", "down": "moves down",
            "grow": "grows", "shrink": "shrinks", "blink": "blinks", "rotate": "rotates"}
_QA_VERB = {"left": "move", "right": "move", "up": "move", "down": "move", "grow": "grow", "shrink": "shrink",
            "blink": "blink", "rotate": "rotate"}


def _qa_items(step: Step, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Open-ended (question, one-word answer) pairs about a step clip, all answerable from its pixels: the acting
    object's colour and shape, what it does and, for a movement, which way. The task's objects have distinct
    colours, so a colour names one object. Answers are unevenly spread (half of all actions are "move"), as in
    MSRVTT-QA, so the most-frequent-answer baseline is meaningful without being strong."""
    c, s, a = step.colour, step.shape, step.action
    does = _QA_DOES[a]
    colour_q = [f"what color is the {s} that {does}?", f"what is the color of the {s} that {does}?"]
    shape_q = [f"what shape is the {c} object?", f"what {c} shape {does}?"]
    action_q = [f"what does the {c} {s} do?", f"what happens to the {c} {s}?"]
    pick = lambda qs: qs[int(rng.integers(len(qs)))]  # noqa: E731
    items = [(pick(colour_q), c), (pick(shape_q), s), (pick(action_q), _QA_VERB[a])]
    if _QA_VERB[a] == "move":
        items.append((pick([f"which way does the {c} {s} move?", f"where does the {c} {s} move?"]), a))
    return items


def _interlink_caption(step: Step, plan: dict, world: World) -> str:
    task = next(t for t in world.tasks if t.id == plan["task_id"])
    others = [f"the {c} {s}" for c, s in task.objects if (c, s) != (step.colour, step.shape)]
    motion = {"left": "slides towards the left edge", "right": "slides towards the right edge",
              "up": "slides upwards", "down": "slides downwards", "grow": "grows larger", "shrink": "gets smaller",
              "blink": "blinks on and off", "rotate": "spins in place"}[step.action]
    rest = (" while " + " and ".join(others) + (" stays" if len(others) == 1 else " stay") + " still") if others else ""
    return (f"{step.sentence}. on a dark background the {step.colour} {step.shape} {motion}{rest}, "
            f"a simple animated shape demonstration.")


def _write_annotations(out: Path, cfg: SynthConfig, world: World, plans: list[dict], narr: list[list[dict]],
                       captions: dict, splits: dict, clips: list[dict], noise: dict) -> None:
    ann = out / "annotations"
    split_of = {v: "train" for v in splits["train"]} | {v: "val" for v in splits["val"]}
    tasks = {t.id: t for t in world.tasks}
    atomic_write_json(ann / "howto100m_captions.json", captions)
    yc = {"database": {}}
    coin = {"database": {}}
    for p in plans:
        vid, sp = p["video_id"], split_of[p["video_id"]]
        url = f"videos/{vid}.mp4"
        sents = [world.steps[s["step_id"]].sentence for s in p["steps"]]
        yc["database"][vid] = {
            "duration": p["duration"], "subset": "training" if sp == "train" else "validation",
            "recipe_type": p["task_id"],
            "annotations": [{"segment": [s["start"], s["end"]], "id": i, "sentence": sent}
                            for i, (s, sent) in enumerate(zip(p["steps"], sents))],
            "video_url": url}
        coin["database"][vid] = {
            "duration": p["duration"], "class": tasks[p["task_id"]].name.replace(" ", ""),
            "subset": "training" if sp == "train" else "testing", "recipe_type": int(p["task_id"]),
            "start": p["steps"][0]["start"] if p["steps"] else 0.0,
            "end": p["steps"][-1]["end"] if p["steps"] else 0.0, "video_url": url,
            "annotation": [{"id": str(s["step_id"]), "segment": [s["start"], s["end"]], "label": sent}
                           for s, sent in zip(p["steps"], sents)]}
    atomic_write_json(ann / "youcookii_annotations_trainval.json", yc)
    atomic_write_json(ann / "COIN.json", coin)
    # CrossTask release folder.
    ct = ann / "crosstask_release"
    blocks = []
    for t in world.tasks:
        names = [world.steps[i].sentence for i in t.steps]
        blocks.append(f"{t.id}\n{t.name}\nsynth://task/{t.id}\n{len(names)}\n{','.join(names)}\n\n")
    atomic_write_text(ct / "tasks_primary.txt", "".join(blocks))
    rows = {"train": [], "val": []}
    for p in plans:
        vid = p["video_id"]
        rows[split_of[vid]].append(f"{p['task_id']},{vid},videos/{vid}.mp4\n")
        body = "".join(f"{s['order'] + 1},{s['start']:.2f},{s['end']:.2f}\n" for s in p["steps"])
        atomic_write_text(ct / "annotations" / f"{p['task_id']}_{vid}.csv", body)
    atomic_write_text(ct / "videos.csv", "".join(rows["train"]))
    atomic_write_text(ct / "videos_val.csv", "".join(rows["val"]))
    # MSR-VTT style retrieval + multiple choice on step clips of validation videos.
    rng = np.random.default_rng([cfg.seed, _S_MSRVTT, 1])
    js = ["key,vid_key,video_id,sentence\n"]
    mc = ["key\tvid_key\tvideo_id\ta1\ta2\ta3\ta4\ta5\tanswer\n"]
    for c in clips:
        step = world.steps[c["step_id"]]
        js.append(f"ret{c['n']},msr{c['n']},video{c['n']},{step.sentence}\n")
        cands = _mc_candidates(step, rng)
        perm = [int(i) for i in rng.permutation(5)]
        ordered = [cands[i] for i in perm]
        mc.append(f"mc{c['n']}\tmsr{c['n']}\tvideo{c['n']}\t" + "\t".join(ordered) + f"\t{perm.index(0)}\n")
    atomic_write_text(ann / "MSRVTT_JSFUSION_test.csv", "".join(js))
    atomic_write_text(ann / "MSR_MC_test.csv", "".join(mc))
    # MSRVTT-QA style open-ended questions on the same clips (its own random stream: the files above are unchanged).
    qa_rng = np.random.default_rng([cfg.seed, _S_MSRVTT, 2])
    qa = [{"answer": ans, "id": 0, "question": q, "video_id": c["n"]}
          for c in clips for q, ans in _qa_items(world.steps[c["step_id"]], qa_rng)]
    for i, item in enumerate(qa):
        item["id"] = i
    atomic_write_json(ann / "msrvtt_qa_test.json", qa)
    # Howto-Interlink7M style interleaved clips (training videos: pretraining data).
    tsv = ["video\tclips\n"]
    for p in plans:
        if split_of[p["video_id"]] != "train":
            continue
        cl = [{"clip_id": str(i), "clip": f"{_hms(s['start'])} - {_hms(s['end'])}",
               "caption": _interlink_caption(world.steps[s["step_id"]], p, world)} for i, s in enumerate(p["steps"])]
        tsv.append(f"videos/{p['video_id']}.mp4\t{json.dumps(cl)}\n")
    atomic_write_text(ann / "howto_interlink7m.tsv", "".join(tsv))
    atomic_write_json(out / "splits.json", splits)
    gt = {"version": GT_VERSION, "config": _config_dict(cfg), "fps": cfg.fps, "size": cfg.size,
          "steps": {str(i): s.sentence for i, s in world.steps.items()},
          "tasks": {t.id: {"name": t.name, "steps": list(t.steps)} for t in world.tasks},
          "videos": {p["video_id"]: {"task_id": p["task_id"], "split": split_of[p["video_id"]],
                                     "duration": p["duration"], "steps": p["steps"], "narration": n}
                     for p, n in zip(plans, narr)},
          "msrvtt": [{"video_id": f"video{c['n']}", "source": c["video_id"], "step": c["step"],
                      "step_id": c["step_id"], "start": c["start"], "end": c["end"]} for c in clips],
          "noise": noise}
    atomic_write_json(out / "ground_truth.json", gt)


def _noise_stats(plans, narr, counts, rolled, n_caption_lines) -> dict:
    offs = np.array([o for c in counts for o in c["offsets"]], dtype=np.float64)
    lines = [ln for n in narr for ln in n]
    rel = [ln for ln in lines if ln["relevant"]]
    in_step = 0
    for p, n in zip(plans, narr):
        for ln in n:
            if ln["relevant"]:
                st = p["steps"][ln["step"]]
                in_step += int(st["start"] <= (ln["start"] + ln["end"]) / 2 < st["end"])
    total_steps = sum(c["steps"] for c in counts)
    dur = sum(p["duration"] for p in plans)
    step_time = sum(s["end"] - s["start"] for p in plans for s in p["steps"])
    chatter = [ln["text"] for ln in lines if ln["kind"] == "chatter"]
    r = lambda x: round(float(x), 4)  # noqa: E731
    return {
        "offset_mean": r(offs.mean()) if offs.size else 0.0,
        "offset_std": r(offs.std()) if offs.size else 0.0,
        "offset_abs_gt5_frac": r((np.abs(offs) > 5).mean()) if offs.size else 0.0,
        "offset_abs_median": r(np.median(np.abs(offs))) if offs.size else 0.0,
        "relevant_line_midpoint_in_step_frac": r(in_step / len(rel)) if rel else 0.0,
        "lines": len(lines),
        "irrelevant_frac": r(1 - len(rel) / len(lines)) if lines else 0.0,
        "chatter_lines": len(chatter),
        "filler_lines": sum(ln["kind"] == "filler" for ln in lines),
        "distinct_chatter_lines": len(set(chatter)),
        "unnarrated_frac": r(sum(c["unnarrated"] for c in counts) / total_steps) if total_steps else 0.0,
        # Filler insertions per content word of the relevant lines (the `filler_rate` dial).
        "filler_rate": r(sum(c["fillers"] for c in counts) / max(1, sum(c["content_words"] for c in counts))),
        "paraphrased_frac": r(sum(c["paraphrased"] for c in counts) / max(1, sum(c["narrated"] for c in counts))),
        "rolling_line_frac": r(rolled / n_caption_lines) if n_caption_lines else 0.0,
        "background_frac": r(1 - step_time / dur) if dur else 0.0,
        "videos_with_skipped_step_frac": None,  # filled by annotate (needs the world)
        "words_per_second": r(sum(len(ln["text"].split()) for ln in lines)
                              / max(1e-9, sum(ln["end"] - ln["start"] for ln in lines))) if lines else 0.0,
        "mean_line_s": r(np.mean([ln["end"] - ln["start"] for ln in lines])) if lines else 0.0,
    }


def make_splits(cfg: SynthConfig) -> dict:
    """{"train": [...], "val": [...]}: a seeded permutation; at least one val video when val_frac > 0 and N > 1."""
    n = cfg.videos
    n_val = int(round(n * cfg.val_frac))
    if cfg.val_frac > 0 and n > 1:
        n_val = min(max(n_val, 1), n - 1)
    perm = np.random.default_rng([cfg.seed, _S_SPLIT]).permutation(n)
    val = sorted(int(i) for i in perm[:n_val])
    val_set = set(val)
    return {"train": [video_id(i) for i in range(n) if i not in val_set], "val": [video_id(i) for i in val]}


def _choose_clips(cfg: SynthConfig, plans: list[dict], splits: dict) -> list[dict]:
    val = set(splits["val"])
    cands = [(p["video_id"], k) for p in plans if p["video_id"] in val for k in range(len(p["steps"]))]
    rng = np.random.default_rng([cfg.seed, _S_MSRVTT])
    picked = [cands[int(i)] for i in rng.permutation(len(cands))[: cfg.msrvtt_clips]]
    by_id = {p["video_id"]: p for p in plans}
    out = []
    for n, (vid, k) in enumerate(picked):
        st = by_id[vid]["steps"][k]
        out.append({"n": n, "video_id": vid, "step": k, "step_id": st["step_id"], "start": st["start"],
                    "end": st["end"]})
    return out


def annotate(cfg: SynthConfig) -> tuple[World, list[dict], list[list[dict]], dict, dict]:
    """Everything but the pixels: (world, plans, clean narration per video, captions, realised noise stats).

    Cheap (about 0.5 ms per video), so tests and noise studies can measure the dials without rendering.
    """
    world = build_world(cfg)
    plans = [plan_video(cfg, world, i) for i in range(cfg.videos)]
    narr, counts, captions = [], [], {}
    rolled = n_cap = 0
    for i, p in enumerate(plans):
        lines, c = narration_for(p, world, cfg, i)
        cap, r = rolling_captions(lines, cfg, i)
        narr.append(lines)
        counts.append(c)
        captions[p["video_id"]] = cap
        rolled += r
        n_cap += len(cap["text"])
    noise = _noise_stats(plans, narr, counts, rolled, n_cap)
    task_len = {t.id: len(t.steps) for t in world.tasks}
    noise["videos_with_skipped_step_frac"] = round(
        sum(len(p["steps"]) < task_len[p["task_id"]] for p in plans) / len(plans), 4)
    return world, plans, narr, captions, noise


def generate_corpus(out_dir: str | Path, cfg: SynthConfig, workers: int | None = None,
                    progress: bool = False) -> dict:
    """Render the corpus into `out_dir` (layout: docs/interfaces.md) and return a summary dict.

    `workers` processes render videos in parallel (None: all cores); the result does not depend on it.
    Summary: {"out", "videos", "train", "val", "hours", "seconds", "rendered", "skipped", "msrvtt_clips",
    "steps", "tasks", "noise"}.
    """
    t0 = time.perf_counter()
    cfg.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory (the corpus is a folder)")
    out.mkdir(parents=True, exist_ok=True)
    world, plans, narr, captions, noise = annotate(cfg)
    for folder in (out / "videos", out / "msrvtt" / "videos"):
        for stale in folder.glob(".*.mp4.*.tmp"):  # left by a killed run (encode_mp4's temp names)
            stale.unlink(missing_ok=True)
    splits = make_splits(cfg)
    clips = _choose_clips(cfg, plans, splits)
    clips_of: dict[str, list] = {}
    for c in clips:
        clips_of.setdefault(c["video_id"], []).append(
            {"path": str(out / "msrvtt" / "videos" / f"video{c['n']}.mp4"), "start": int(c["start"]),
             "end": int(c["end"])})
    jobs = [{"spec": p["spec"], "path": str(out / "videos" / f"{p['video_id']}.mp4"),
             "clips": clips_of.get(p["video_id"], [])} for p in plans]
    # Longest videos first: better load balance across workers.
    jobs.sort(key=lambda j: -j["spec"]["n_frames"])
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    results = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="synth", unit="video", file=sys.stderr)
    if workers == 1 or len(jobs) == 1:
        for j in jobs:
            results.append(render_job(j))
            if bar is not None:
                bar.update()
    else:
        import multiprocessing as mp

        # spawn, not fork: the caller may hold torch/threads (tests, the demo), which fork does not copy safely.
        with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for r in pool.imap_unordered(render_job, jobs, chunksize=1):
                results.append(r)
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
    _write_annotations(out, cfg, world, plans, narr, captions, splits, clips, noise)
    rendered = sum(r["rendered"] for r in results)
    return {"out": str(out), "videos": len(plans), "train": len(splits["train"]), "val": len(splits["val"]),
            "hours": round(sum(p["duration"] for p in plans) / 3600, 3),
            "seconds": round(time.perf_counter() - t0, 2), "rendered": rendered, "skipped": len(plans) - rendered,
            "msrvtt_clips": len(clips), "steps": len(world.steps), "tasks": len(world.tasks), "noise": noise}


# --- CLI --------------------------------------------------------------------------------------------------------------

_FLAGS = {  # flag -> (config field, type, help)
    "--videos": ("videos", int, "number of long videos"),
    "--seed": ("seed", int, "random seed (same seed: identical corpus)"),
    "--size": ("size", int, "frame side in pixels (even)"),
    "--fps": ("fps", int, "frames per second"),
    "--min-duration": ("min_duration", int, "shortest video (s)"),
    "--max-duration": ("max_duration", int, "longest video (s)"),
    "--step-min": ("step_min", int, "shortest step (s)"),
    "--step-max": ("step_max", int, "longest step (s)"),
    "--tasks": ("tasks", int, "number of tasks"),
    "--skip-prob": ("skip_prob", float, "probability a video skips one step"),
    "--noise-std": ("noise_std", float, "pixel noise std (uint8 levels)"),
    "--offset-std": ("offset_std", float, "narration timestamp shift std (s)"),
    "--offset-mean": ("offset_mean", float, "narration timestamp shift mean (s)"),
    "--irrelevant-frac": ("irrelevant_frac", float, "fraction of irrelevant ASR lines"),
    "--unnarrated-frac": ("unnarrated_frac", float, "fraction of steps never narrated"),
    "--filler-rate": ("filler_rate", float, "filler words per word of relevant lines"),
    "--paraphrase-rate": ("paraphrase_rate", float, "per-slot paraphrase probability"),
    "--rolling-rate": ("rolling_rate", float, "fraction of caption lines with rolling repetition"),
    "--val-frac": ("val_frac", float, "fraction of videos in the validation split"),
    "--msrvtt-clips": ("msrvtt_clips", int, "number of MSR-VTT-style step clips"),
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vidlang synth", description=__doc__.split("\n")[0])
    ap.add_argument("out", help="output folder")
    ap.add_argument("--config", help="YAML file with SynthConfig fields (flags override it)")
    for flag, (_, tp, help_) in _FLAGS.items():
        ap.add_argument(flag, type=tp, default=None, help=help_)
    ap.add_argument("--clean", action="store_true", help="zero every narration noise (offsets, chatter, ...)")
    ap.add_argument("--workers", type=int, default=None, help="render processes (default: all cores)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    data = read_yaml(args.config) if args.config else {}
    for _, (name, _, _) in _FLAGS.items():
        v = getattr(args, name)
        if v is not None:
            data[name] = v
    try:
        cfg = from_dict(SynthConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{args.config}: {e}" if args.config else str(e)) from None
    return cfg.clean() if args.clean else cfg


def format_summary(s: dict) -> str:
    n = s["noise"]
    return (f"synth: {s['videos']} videos ({s['train']} train / {s['val']} val, {s['hours']:.2f} h of video, "
            f"{s['tasks']} tasks, {s['steps']} steps, {s['msrvtt_clips']} MSR-VTT clips) in {s['seconds']:.1f} s "
            f"({s['rendered']} rendered, {s['skipped']} up to date) -> {s['out']}\n"
            f"noise: offset mean {n['offset_mean']:+.2f} s std {n['offset_std']:.2f} s "
            f"(|offset| > 5 s: {n['offset_abs_gt5_frac']:.1%}), irrelevant lines {n['irrelevant_frac']:.1%}, "
            f"unnarrated steps {n['unnarrated_frac']:.1%}, fillers {n['filler_rate']:.2f}/word, "
            f"paraphrased {n['paraphrased_frac']:.1%}, rolling lines {n['rolling_line_frac']:.1%}, "
            f"line midpoint in its step {n['relevant_line_midpoint_in_step_frac']:.1%}, "
            f"background {n['background_frac']:.1%}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    summary = generate_corpus(args.out, cfg, workers=args.workers, progress=not args.no_progress)
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
