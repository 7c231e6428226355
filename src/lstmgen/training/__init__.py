"""Training a model: the loop, its schedule and batches, the roll-back after divergence,
sizing to a budget, the lr range test, reporting."""
