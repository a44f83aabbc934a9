"""Training on the store: the clip Dataset, the detector registry, the loop."""
