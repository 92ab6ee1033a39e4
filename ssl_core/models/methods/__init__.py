"""Pretraining methods behind one interface (see base.py), found by name in `METHODS`.

Every module in this package is imported here, so a new method is one new file that registers
itself with `@register_method`; nothing else needs editing.
"""

import importlib
import pkgutil

from ssl_core.models.methods.base import (METHODS, Method, MethodConfig, build_method, check_compatible,
                                          register_method, run_kind)

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "heads"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Method", "MethodConfig", "build_method", "check_compatible", "register_method", "run_kind"]
