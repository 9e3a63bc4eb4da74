import numpy as np
import pytest

import lagrangian_nn as lnn


def _write_kmnist(folder, n_train=50, n_test=20):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
        np.savez_compressed(folder / f"kmnist-{split}-imgs.npz", imgs)
        np.savez_compressed(folder / f"kmnist-{split}-labels.npz", labels)
    return imgs, labels


def test_kmnist_reads_official_format(tmp_path):
    imgs, labels = _write_kmnist(tmp_path)
    x, y = lnn.data.kmnist(tmp_path, "test")
    assert x.shape == (20, 784) and x.dtype == np.float32 and y.dtype == np.int32
    assert np.allclose(x, imgs.reshape(20, -1) / 255.0) and np.array_equal(y, labels)
    xs, ys = lnn.data.kmnist(tmp_path, "train", n=10, seed=3)
    xs2, _ = lnn.data.kmnist(tmp_path, "train", n=10, seed=3)
    xs3, _ = lnn.data.kmnist(tmp_path, "train", n=10, seed=4)
    assert (
        xs.shape == (10, 784)
        and np.array_equal(xs, xs2)
        and not np.array_equal(xs, xs3)
    )


def test_kmnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="rois-codh/kmnist"):
        lnn.data.kmnist(tmp_path)
    _write_kmnist(tmp_path)
    with pytest.raises(ValueError, match="`split`"):
        lnn.data.kmnist(tmp_path, "validation")
    with pytest.raises(ValueError, match="`n`"):
        lnn.data.kmnist(tmp_path, n=10_000)
    # a pickled object array is refused, not unpickled
    np.savez(tmp_path / "kmnist-test-labels.npz", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        lnn.data.kmnist(tmp_path, "test")


def test_digits_offline_default():
    x, y = lnn.data.digits()
    assert x.shape == (1000, 64) and y.shape == (1000,)
    assert 0.0 <= x.min() and x.max() <= 1.0 and set(np.unique(y)) == set(range(10))
    x2, _ = lnn.data.digits(seed=0)
    x3, _ = lnn.data.digits(seed=1)
    assert np.array_equal(x, x2) and not np.array_equal(x, x3)
    assert lnn.data.digits(n=None)[0].shape == (1797, 64)
