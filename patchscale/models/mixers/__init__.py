"""Token mixers. Importing this package registers every built-in mixer."""

from patchscale.models.mixers import attention  # noqa: F401  (registers "attention")
from patchscale.models.mixers.registry import get, names, register

__all__ = ["get", "names", "register"]
