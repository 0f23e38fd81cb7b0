"""COSMO: interleaved video-text training of a causal LM with gated cross-attention (vidlang/models/cosmo/).

- `config.py`: `CosmoConfig` (defaults from the release) and `default_lm_dir()`.
- `causal_lm.py`: loading and checking a local transformers causal LM, its decoder layers, truncation.
- `layers.py`: perceiver resampler, gated cross-attention, attention pooling.
- `model.py`: `CosmoModel` (forward for training, embeddings, text-only logits, save/load).
- `generate.py`: greedy and beam-search generation with a KV cache, log-likelihood scoring.
"""

from vidlang.models.cosmo.causal_lm import END_OF_CHUNK, VISUAL
from vidlang.models.cosmo.config import CosmoConfig, default_lm_dir
from vidlang.models.cosmo.model import CosmoModel, MediaContext

__all__ = ["END_OF_CHUNK", "VISUAL", "CosmoConfig", "CosmoModel", "MediaContext", "default_lm_dir"]
