"""The run folder: `files` (the name of every file of a run), `runs` (`Run`: its config, status,
metrics, kind and lock), `run_store` (`RunStore`: create, list, delete), `atomic` (crash-safe
writes), `reading` (tolerant reading and the store's errors) and `processes` (who is alive).

Everything that trains, scores or shows a run reads and writes it through this layer; it knows
the files of a run but nothing of how they are computed. Uses only `core`.
"""
