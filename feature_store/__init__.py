"""Every read and write of the Zarr store and its index; nothing here computes features."""

import warnings

# zarr warns on every array it opens that numcodecs codecs are outside the v3 core spec:
# zarr-python reads them with no plugin, the bar docs/STORE.md sets, so the warning says nothing.
warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3 specification")

from feature_store.keys import video_key  # noqa: E402
from feature_store.store import FeatureStore, StoredVideo  # noqa: E402

__all__ = ["FeatureStore", "StoredVideo", "video_key"]
