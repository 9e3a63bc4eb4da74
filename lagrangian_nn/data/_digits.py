"""scikit-learn's handwritten digits: the offline default dataset."""

import numpy as np

from ._kmnist import _subsample


def digits(*, n: int | None = 1000, seed: int = 0):
    """The 1,797 8×8 handwritten digits that ship with scikit-learn (no download).

    **Arguments:**

    - `n`: subsample size, chosen deterministically by `seed`; default 1,000 as in the
      paper's experiments. `None` returns all 1,797.
    - `seed`: seed of the subsample.

    **Returns:** `(x, y)`: `x` float32 `(n, 64)` scaled to [0, 1], `y` int32 labels.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover
        raise ImportError(
            "`lnn.data.digits` needs scikit-learn: `pip install 'lagrangian_nn[data]'` "
            "(or `pip install scikit-learn`)."
        ) from e
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int32)
    return _subsample(x, y, n, seed)
