"""Models: the registry (`model.arch`, base.py), checkpoints (checkpoint.py) and the registered models: the dual
encoder (text tower: transformers AutoModel; VideoCLIP-style video tower; inference Embedder)."""

from vidlang.models.base import MODELS, ModelSection, VidlangModel, model_class, register_model
from vidlang.models.checkpoint import load_model, save_checkpoint
from vidlang.models.dual import DualEncoder, DualEncoderConfig
from vidlang.models.embed import Embedder
from vidlang.models.text import TextConfig, TextEncoder
from vidlang.models.video import VideoConfig, VideoEncoder

__all__ = ["MODELS", "ModelSection", "VidlangModel", "model_class", "register_model", "load_model",
           "save_checkpoint", "DualEncoder", "DualEncoderConfig", "Embedder", "TextConfig", "TextEncoder",
           "VideoConfig", "VideoEncoder"]
