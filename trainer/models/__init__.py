"""Detector networks. Every one maps normalised inputs to a dict holding `logits`: per image
for frame-level nets (N, ...), per sample for clip-level ones (B, ...)."""
