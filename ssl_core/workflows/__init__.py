"""Whole tasks that a person starts: a run from start to finish (`pipeline`), making a run from
embeddings or an encoder of one's own (`importer`), training or analyses as background
processes (`jobs`), and the check of a request to train (`train_request`). The CLI and the app
call these. Uses every layer below it.
"""
