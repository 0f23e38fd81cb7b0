"""Language side of the synthetic world: canonical step sentences, paraphrases, fillers, chatter, ASR lines.

Everything here is a pure function of its arguments and a `numpy.random.Generator`, so the narration of a video
is reproducible from (seed, video index) alone. Nothing renders pixels here (see render.py).

Why so much vocabulary: a small fixed pool of irrelevant lines is memorised by a text encoder within seconds
(measured with 120 videos and ~850 training pairs), so chatter is drawn from a compositional space of tens of
thousands of sentences, and relevant lines are paraphrased (verbs, nouns, directions, sentence frames) so that a
model cannot match narration to steps by exact string identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --- the world's vocabulary -------------------------------------------------------------------------------------

COLOURS: dict[str, tuple[int, int, int]] = {
    # Saturated, mutually distant colours so an 8x8 colour grid tells them apart after yuv420p chroma subsampling.
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 245),
    "yellow": (240, 220, 40),
    "purple": (170, 60, 210),
    "cyan": (40, 215, 225),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "cross")
ACTIONS: tuple[str, ...] = ("left", "right", "up", "down", "grow", "shrink", "blink", "rotate")


def valid_step(shape: str, action: str) -> bool:
    """A rotating circle looks exactly like an idle one, so that (object, action) pair is never a step."""
    return not (shape == "circle" and action == "rotate")


def canonical_sentence(colour: str, shape: str, action: str) -> str:
    """The one clean sentence of a step, e.g. "move the red square to the left"."""
    o = f"the {colour} {shape}"
    return {
        "left": f"move {o} to the left",
        "right": f"move {o} to the right",
        "up": f"move {o} up",
        "down": f"move {o} down",
        "grow": f"grow {o}",
        "shrink": f"shrink {o}",
        "blink": f"make {o} blink",
        "rotate": f"rotate {o}",
    }[action]


# Paraphrase slots. Index 0 of every list is the canonical choice (used when the paraphrase coin says no).
_NOUNS = {
    "square": ["square", "box", "block", "tile", "square shape"],
    "circle": ["circle", "ball", "disc", "dot", "round one"],
    "triangle": ["triangle", "wedge", "triangle shape", "little triangle"],
    "cross": ["cross", "plus sign", "plus", "cross shape"],
}
_COLOUR_SYNONYMS = {"purple": ["purple", "violet"], "cyan": ["cyan", "light blue", "turquoise"]}
_DETERMINERS = ["the", "that", "this"]
_MOVE_VERBS = ["move", "slide", "push", "shift", "drag", "nudge", "bring"]
_ACTION_TEMPLATES = {
    # {v} = a movement verb, {o} = the object phrase.
    "left": ["{v} {o} to the left", "{v} {o} left", "{v} {o} over to the left", "{v} {o} leftwards",
             "{v} {o} towards the left side"],
    "right": ["{v} {o} to the right", "{v} {o} right", "{v} {o} over to the right", "{v} {o} rightwards",
              "{v} {o} towards the right side"],
    "up": ["{v} {o} up", "{v} {o} upwards", "{v} {o} to the top", "{v} {o} higher", "raise {o}", "lift {o} up"],
    "down": ["{v} {o} down", "{v} {o} downwards", "{v} {o} to the bottom", "lower {o}", "drop {o} down"],
    "grow": ["grow {o}", "make {o} bigger", "enlarge {o}", "scale up {o}", "make {o} larger", "blow up {o}"],
    "shrink": ["shrink {o}", "make {o} smaller", "scale down {o}", "reduce {o}", "make {o} tiny"],
    "blink": ["make {o} blink", "flash {o}", "make {o} flicker", "blink {o}", "let {o} flash on and off"],
    "rotate": ["rotate {o}", "spin {o}", "turn {o} around", "twist {o}", "spin {o} around"],
}
_FRAMES = ["{s}", "now {s}", "next we {s}", "what we're going to do is {s}", "you want to {s}", "go ahead and {s}",
           "then {s}", "let's {s}", "I'm going to {s}", "and then you {s}", "the next step is to {s}",
           "okay now we {s}", "here we {s}", "so we {s}", "all you have to do is {s}"]
FILLER_TOKENS = ["um", "uh", "so", "like", "you know", "basically", "kind of", "okay", "right", "I mean"]


def _pick(rng: np.random.Generator, options: list[str], rate: float) -> str:
    """Canonical option (index 0) unless a coin with probability `rate` says paraphrase, then any other one."""
    if len(options) > 1 and rate > 0 and rng.random() < rate:
        return options[1 + int(rng.integers(len(options) - 1))]
    return options[0]


def paraphrase(colour: str, shape: str, action: str, rng: np.random.Generator, rate: float) -> str:
    """A spoken variant of the step's sentence; `rate` = probability that each slot leaves its canonical word.

    rate=0 returns `canonical_sentence(colour, shape, action)` exactly.
    """
    noun = _pick(rng, _NOUNS[shape], rate)
    col = _pick(rng, _COLOUR_SYNONYMS.get(colour, [colour]), rate / 2)
    det = _pick(rng, _DETERMINERS, rate / 2)
    obj = f"{det} {col} {noun}"
    verb = _pick(rng, _MOVE_VERBS, rate)
    body = _pick(rng, _ACTION_TEMPLATES[action], rate).format(v=verb, o=obj)
    return _pick(rng, _FRAMES, rate).format(s=body)


def add_fillers(words: list[str], rng: np.random.Generator, rate: float) -> tuple[list[str], int]:
    """Insert filler tokens ("um", "you know", ...) before words; expected insertions = rate * len(words).

    Returns (new word list, number of insertions); a multi-word filler ("you know") is one insertion.
    """
    if rate <= 0 or not words:
        return list(words), 0
    out: list[str] = []
    n_fill = 0
    for i, w in enumerate(words):
        if rng.random() < rate:
            f = FILLER_TOKENS[int(rng.integers(len(FILLER_TOKENS)))].split()
            out.extend(f)
            n_fill += 1
        out.append(w)
    return out, n_fill


# --- chatter: a compositional space of irrelevant sentences -------------------------------------------------------

_PEOPLE = ["mom", "dad", "sister", "brother", "grandma", "grandpa", "neighbor", "roommate", "best friend",
           "cousin", "uncle", "aunt", "coworker", "kid", "wife", "husband"]
_CHATTER = {
    "cta": (
        ["", "hey", "and hey", "oh and", "before I forget", "by the way", "real quick", "guys", "also"],
        ["don't forget to subscribe", "hit that like button", "smash the like button", "turn on notifications",
         "leave a comment below", "share this with your friends", "check out my other videos",
         "subscribe to the channel", "ring the bell", "join the newsletter"],
        ["", "it really helps the channel", "if you haven't already", "it means a lot", "for more videos like this",
         "so you never miss an upload", "thanks so much", "see you next time", "I really appreciate it"],
    ),
    "anecdote": (
        ["", "funny story", "you know", "so", "honestly", "I remember", "this reminds me", "fun fact"],
        ["my " + p for p in _PEOPLE],
        ["loves", "used to make", "always asks about", "never liked", "bought", "painted", "broke", "collects",
         "talks about", "laughed at", "gave me"],
        ["these things", "old cameras", "board games", "puzzles", "the garden", "pancakes", "vintage radios",
         "paper planes", "the dog", "his bike", "her guitar", "houseplants", "model trains"],
        ["", "every weekend", "back in college", "last summer", "when I was a kid", "all the time", "for years",
         "on holidays"],
    ),
    "sponsor": (
        ["this video is sponsored by", "thanks to", "shout out to", "big thanks to", "today's sponsor is"],
        ["zen", "nova", "pixel", "blue", "quick", "bright", "hyper", "cloud", "true", "snap"],
        ["ly", "box", "hub", "mate", "ify", "works", "point", "nest"],
        ["", "check them out", "link in the description", "use my code for a discount",
         "they make great stuff", "go give them a try"],
    ),
    "ambient": (
        ["", "wow", "man", "okay", "sorry", "ugh", "honestly"],
        ["the weather", "the lighting", "the camera", "my microphone", "the music", "the traffic outside",
         "my coffee", "the wifi", "the neighbors", "this room"],
        ["is", "seems", "looks", "feels"],
        ["really weird", "so nice", "kind of loud", "terrible", "amazing", "a bit off", "way too bright",
         "pretty cold", "super slow"],
        ["today", "right now", "this morning", "again", "", "as usual"],
    ),
    "meta": (
        ["", "so", "anyway", "alright", "by the way"],
        ["let me know in the comments", "tell me below", "write in the chat", "drop a comment"],
        ["what you want to see next", "if you tried this", "how yours turned out", "where you're watching from",
         "if this was helpful", "what I should build next"],
    ),
    "mention": (
        # Hard negatives: chatter that names the world's colours and shapes but instructs nothing.
        ["", "honestly", "you know", "fun fact", "I think", "personally"],
        ["I really like the", "my favourite is the", "people always ask about the", "I used to hate the",
         "my kid loves the"],
        list(COLOURS),
        ["one", "ones", "colour", "shape", "version"],
        ["", "it just looks nice", "for some reason", "don't ask me why", "on this channel", "in the thumbnail"],
    ),
}
_CHATTER_WEIGHTS = {"cta": 0.2, "anecdote": 0.3, "sponsor": 0.1, "ambient": 0.15, "meta": 0.1, "mention": 0.15}
_FILLER_LINES = (["um", "uh", "okay", "so", "alright", "hmm", "right", "yeah"],
                 ["", "so", "let me see", "yeah", "okay", "where was I", "one second", "hold on"])


def chatter_space_size() -> int:
    """Number of distinct chatter sentences the templates can produce (upper bound; duplicates after joining)."""
    total = 0
    for slots in _CHATTER.values():
        n = 1
        for s in slots:
            n *= len(s)
        total += n
    return total


def chatter_sentence(rng: np.random.Generator) -> str:
    """One irrelevant sentence ("don't forget to subscribe ...", an anecdote, a sponsor read, ...)."""
    kinds = list(_CHATTER_WEIGHTS)
    p = np.array([_CHATTER_WEIGHTS[k] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
    parts = [s[int(rng.integers(len(s)))] for s in _CHATTER[kind]]
    if kind == "sponsor":
        # Brand names are glued from two syllables: "novabox".
        parts = [parts[0], parts[1] + parts[2], parts[3]]
    return " ".join(w for w in parts if w)


def filler_line(rng: np.random.Generator) -> str:
    a, b = (s[int(rng.integers(len(s)))] for s in _FILLER_LINES)
    return f"{a} {b}".strip()


# --- ASR line splitting -----------------------------------------------------------------------------------------


@dataclass
class Utterance:
    """One stretch of speech: its words, wall-clock duration and what it is about."""

    words: list[str]
    kind: str  # "step" | "chatter" | "filler"
    step: int | None  # index into the video's realised steps, for kind == "step"
    target_start: float  # where the speaker intends to start (before de-overlapping)
    duration: float


def split_lines(words: list[str], rng: np.random.Generator, words_per_second: float, line_min_s: float,
                line_max_s: float) -> list[list[str]]:
    """Cut an utterance into ASR lines of `line_min_s`..`line_max_s` seconds of speech at `words_per_second`.

    A tail shorter than 3 words is merged into the line before it (ASR never emits a one-word line mid-speech
    unless the speaker pauses).
    """
    lo = max(1, int(round(line_min_s * words_per_second)))
    hi = max(lo, int(round(line_max_s * words_per_second)))
    chunks: list[list[str]] = []
    i = 0
    while i < len(words):
        n = int(rng.integers(lo, hi + 1))
        chunks.append(words[i:i + n])
        i += n
    if len(chunks) > 1 and len(chunks[-1]) < 3:
        tail = chunks.pop()
        chunks[-1] = chunks[-1] + tail
    return chunks
