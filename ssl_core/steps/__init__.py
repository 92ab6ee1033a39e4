"""The stored steps after training, each reading what the one before stored: `embed` (every
image through the encoder), `evaluate` (kNN, linear probe, geometry), `projection` (the 2-D map),
`index` (FAISS search), `browsing` (what the pages read of a run: its map with metadata,
nearest-neighbour search, uploads) and `readiness` (what a run can be used for yet, with the
reason: the one answer the CLI and the pages give). Uses `core`, `store`, `data`, `models` and `training`.
"""
