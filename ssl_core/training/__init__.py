"""The training loop (`loop`), one function for every method, with its batching, checkpoints,
signals and failures, and data-parallel training under torchrun (`distributed`). Uses the layers
below it: `core`, `store`, `data`, `models`.
"""
