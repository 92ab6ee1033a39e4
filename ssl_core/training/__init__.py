"""The training loop (`loop`), one function for every method, with the named pieces beside it:
what each step trains on and in which seeded order (`batching`), AdamW and its schedule
(`optimizer`), the kNN check on the way (`knn`), SIGINT/SIGTERM (`signals`), and data-parallel
training under torchrun (`distributed`). Uses the layers below it: `core`, `store`, `data`,
`models`, `steps`.
"""
