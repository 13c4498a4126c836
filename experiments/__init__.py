"""Experiment files: each defines get_config(arg=None) and, for a sweep, get_sweep().

A package, so experiments build on each other with relative imports
(`from .mnist_sweep import get_config`); `patchscale train|sweep experiments/X.py` imports them
as `experiments.X`.
"""
