"""What `rotational_orbits` measures along its saved curves, in NumPy: drifts of a
conserved vector, the distance of an orbit from its plane, the gap between a discrete
run and its flow at matched times."""

import numpy as np


def rel_drift(x, ref=None):
    """max_t |x(t) − x(0)| / |x(0)| for a curve of vectors (rows)."""
    x = np.asarray(x)
    ref = x[0] if ref is None else np.asarray(ref)
    return float(np.max(np.linalg.norm(x - ref, axis=-1)) / np.linalg.norm(ref))


def max_deviation(x):
    """max_t max_i |x_i(t) − x_i(0)| for a curve of vectors (rows)."""
    x = np.asarray(x)
    return float(np.max(np.abs(x - x[0])))


def off_plane_curve(q, L0):
    """|⟨w(t), L̂0⟩| / |w(t)| along the orbit `q`: its distance from the plane through
    the origin orthogonal to the initial angular momentum L0."""
    q, L0 = np.asarray(q), np.asarray(L0)
    return np.abs(q @ (L0 / np.linalg.norm(L0))) / np.linalg.norm(q, axis=1)


def off_plane(q, L0):
    """max_t of `off_plane_curve`: how far the orbit leaves the plane."""
    return float(np.max(off_plane_curve(q, L0)))


def path_gap(ts_c, q_c, ts_d, q_d, w_start):
    """max |w_flow(t_k) − w_k| over the discrete iterates `q_d` (with the start
    `w_start` one step before `ts_d[0]`) and the flow `q_c` saved at `ts_c`,
    interpolated linearly to the iterates' times within its span."""
    ts_c, q_c, ts_d = np.asarray(ts_c), np.asarray(q_c), np.asarray(ts_d)
    ts_d = np.concatenate([[ts_d[0] - (ts_d[1] - ts_d[0])], ts_d])
    q_d = np.concatenate([np.asarray(w_start)[None], np.asarray(q_d)])
    interp = np.stack([np.interp(ts_d, ts_c, q_c[:, i]) for i in range(3)], -1)
    mask = ts_d <= ts_c[-1]
    return float(np.max(np.linalg.norm(interp[mask] - q_d[mask], axis=1)))


def thin(x, m=4000):
    """Every k-th row of `x`, about `m` rows in all (for the saved curves)."""
    x = np.asarray(x)
    return x[:: max(1, len(x) // m)]
