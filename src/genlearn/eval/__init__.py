"""Held-out evaluation: likelihood bounds and estimates, sample-based metrics, probes."""
