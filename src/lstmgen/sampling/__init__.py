"""Generating text: the sampler (temperature, top-k/p, penalties, stops) and single-step paths."""
