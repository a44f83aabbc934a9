"""Every read and write of the Zarr store and its manifest; nothing here computes features."""

from feature_store.keys import video_key
from feature_store.store import COMPLETE, FeatureStore

__all__ = ["COMPLETE", "FeatureStore", "video_key"]
