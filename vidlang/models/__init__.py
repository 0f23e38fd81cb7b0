"""Models: text tower (transformers AutoModel), VideoCLIP-style video tower, dual encoder, inference Embedder."""

from vidlang.models.dual import DualEncoder, ModelConfig
from vidlang.models.embed import Embedder
from vidlang.models.text import TextConfig, TextEncoder
from vidlang.models.video import VideoConfig, VideoEncoder

__all__ = ["DualEncoder", "ModelConfig", "Embedder", "TextConfig", "TextEncoder", "VideoConfig", "VideoEncoder"]
