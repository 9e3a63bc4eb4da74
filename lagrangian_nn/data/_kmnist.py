"""The KMNIST dataset from its official `.npz` files."""

from pathlib import Path

import numpy as np

_FILES = {
    "train": ("kmnist-train-imgs.npz", "kmnist-train-labels.npz"),
    "test": ("kmnist-test-imgs.npz", "kmnist-test-labels.npz"),
}
_HOWTO = (
    "Download the four NumPy-format files of Kuzushiji-MNIST from "
    "https://github.com/rois-codh/kmnist (section 'Kuzushiji-MNIST', format .npz): "
    "kmnist-train-imgs.npz, kmnist-train-labels.npz, kmnist-test-imgs.npz, "
    "kmnist-test-labels.npz, and put them in one folder."
)


def _load_array(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        if "arr_0" not in data.files:
            raise ValueError(
                f"{path} is not an official KMNIST file: it has no `arr_0` array "
                f"(found {data.files})."
            )
        return data["arr_0"]


def kmnist(folder, split: str = "train", *, n: int | None = None, seed: int = 0):
    """Loads KMNIST from the official `kmnist-{train,test}-{imgs,labels}.npz` files.

    No pickle is involved (`allow_pickle=False`).

    **Arguments:**

    - `folder`: the folder that holds the files.
    - `split`: `"train"` or `"test"`.
    - `n`: optionally a subsample size, chosen deterministically by `seed` (the paper
      uses 1,000 training samples).
    - `seed`: seed of the subsample.

    **Returns:** `(x, y)`: `x` float32 of shape `(n, 784)` scaled to [0, 1], `y` int32
    labels in 0..9.

    **Raises:** `FileNotFoundError` saying how to get the files when they are missing;
    `ValueError` for a bad `split`, `n` or malformed files.
    """
    if split not in _FILES:
        raise ValueError(f"`split` must be 'train' or 'test'; got {split!r}.")
    folder = Path(folder)
    paths = [folder / name for name in _FILES[split]]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"KMNIST files missing from {folder}: {', '.join(missing)}. {_HOWTO}"
        )
    images, labels = (_load_array(p) for p in paths)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"KMNIST images must have shape (N, 28, 28); got {images.shape}."
        )
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"KMNIST labels must have shape ({images.shape[0]},); got {labels.shape}."
        )
    x = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
    y = labels.astype(np.int32)
    return _subsample(x, y, n, seed)


def _subsample(x, y, n, seed):
    if n is None:
        return x, y
    if not isinstance(n, int) or not 0 < n <= x.shape[0]:
        raise ValueError(f"`n` must be an int in [1, {x.shape[0]}]; got {n!r}.")
    idx = np.sort(np.random.default_rng(seed).choice(x.shape[0], size=n, replace=False))
    return x[idx], y[idx]
