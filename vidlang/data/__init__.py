"""Data access: feature store, long-video sampler, batches, the realigner. Imports stay light (no torch at import)."""

from vidlang.data.store import FeatureStore

__all__ = ["FeatureStore"]
