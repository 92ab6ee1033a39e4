"""The run folder: `Run`, `RunStore`, crash-safe writes, the run's lock, and tolerant reading.

Everything that trains, scores or shows a run reads and writes it through this layer; it knows
the files of a run but nothing of how they are computed. Uses only `core`.
"""
