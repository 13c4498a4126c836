"""Token mixers, one file each. Every module in this package is imported here, so a new file
that registers its class (`@register("name")`) is all it takes to add a mixer."""

import importlib
import pkgutil

from patchscale.models.mixers.registry import get, names, register

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["get", "names", "register"]
