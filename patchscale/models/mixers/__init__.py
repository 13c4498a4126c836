"""Token mixers, one file each: a new file that registers its class is all it takes to add one.

Every module in this package is imported here, so a file whose class is decorated with
`@register("name")` is found by `model.mixer=name`."""

import importlib
import pkgutil

from patchscale.models.mixers.registry import get, names, register

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["get", "names", "register"]
