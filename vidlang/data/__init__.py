"""Data access: feature store, samplers, synthetic corpus. Imports stay light (no torch at package import)."""

from vidlang.data.store import FeatureStore

__all__ = ["FeatureStore"]
