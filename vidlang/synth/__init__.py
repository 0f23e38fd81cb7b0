"""The embedded synthetic world: long, noisily narrated instructional videos written in the public formats.

`vidlang synth OUT` (vidlang.synth.generate) renders it; `text.py` holds the narration language and `render.py`
the pixels. Nothing in the library depends on this package: it only produces corpora for the rest to read.
"""

from vidlang.synth.generate import SynthConfig, generate_corpus

__all__ = ["SynthConfig", "generate_corpus"]
