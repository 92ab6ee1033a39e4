"""Whole tasks that a person starts: a run from start to finish (`pipeline`), making a run from
embeddings or an encoder of one's own (`importer`), and training or analyses as background
processes (`jobs`). The CLI and the app call these. Uses every layer below it.
"""
