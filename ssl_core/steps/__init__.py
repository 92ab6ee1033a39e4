"""The stored steps after training, each reading what the one before stored: `embed` (every
image through the encoder), `evaluate` (kNN, linear probe, geometry), `projection` (the 2-D map),
`index` (FAISS search), and `browsing` (what the pages read of a run: its map with metadata,
nearest-neighbour search, uploads). Uses `core`, `store`, `data`, `models` and `training`.
"""
