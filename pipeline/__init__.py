"""Wiring: dataset sources, planning against the store, and the Dask run. Computes nothing."""
