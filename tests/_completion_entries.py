"""Random observed entries for the completion tests."""

import numpy as np

from regtheory import completion


def random_entries(rng, shape, count, values=True):
    """``count`` distinct entries of a matrix of ``shape``, every row and column covered;
    standard normal values (zeros with ``values=False``)."""
    m, n = shape
    while True:
        flat = rng.choice(m * n, size=count, replace=False)
        rows, cols = flat // n, flat % n
        if np.unique(rows).size == m and np.unique(cols).size == n:
            break
    y = rng.normal(size=count) if values else np.zeros(count)
    return completion.observed(rows, cols, y, shape)
