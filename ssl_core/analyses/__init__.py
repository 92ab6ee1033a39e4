"""Deeper looks at a trained run, computed on request and stored under its analysis/ folder:
probes per layer and per factor, fine-tuning, clusters, outliers, attention maps, comparisons of
runs and exports, with `runner` running the registered ones. Uses every layer below it.
"""
