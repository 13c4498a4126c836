"""patchscale: patchification scaling laws for vision token mixers, in JAX/Flax NNX.

The command line (`patchscale train|sweep|fit|plot|report|config|bench|data`) is the main interface;
see README.md and docs/. Modules import their heavy dependencies (jax, tensorflow-datasets)
where they are used, so `import patchscale` itself is cheap.
"""

import importlib.metadata

try:
    __version__ = importlib.metadata.version("patchscale")
except importlib.metadata.PackageNotFoundError:  # A source tree that was not installed.
    __version__ = "unknown"
