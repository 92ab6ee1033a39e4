"""Pretraining methods behind one interface (see base.py), found by name in `METHODS`."""

from ssl_core.methods.base import METHODS, Method, MethodConfig, build_method, check_compatible, register_method
from ssl_core.methods import baselines, simclr  # noqa: F401  (registers them)

__all__ = ["METHODS", "Method", "MethodConfig", "build_method", "check_compatible", "register_method"]
