"""Training a model: the loop, its batches, sizing to a budget, the lr range test, reporting."""
