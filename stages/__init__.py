"""Pure computation: decode, faces, flow. Arrays and frozen configs in, named results out."""
