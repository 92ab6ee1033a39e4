"""The bottom layer: what every other layer may use and that uses nothing of ssl_core.

`config` (one dataclass per concern; the saved config.json is the whole truth), `registry`
(named registries with errors that list the valid names) and `runtime` (the device a run uses,
its numeric precision and the library versions recorded with it).
"""
