"""The stored steps after training, each reading what the one before stored: `embed` (every
image through the encoder), `evaluate` (kNN, linear probe, geometry), `projection` (the 2-D map),
`index` (the FAISS index and nearest-neighbour search), `browsing` (what the pages read of a run:
its map with metadata and images, uploads) and `readiness` (what a run can be used for yet, with
the reason: the one answer the CLI and the pages give). Uses `core`, `store`, `data` and `models`;
training sits above, since its kNN check embeds and scores with these functions.
"""
