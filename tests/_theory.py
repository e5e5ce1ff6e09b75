"""Literal values typed from docs/THEORY.md, shared by the tests (never computed by the package)."""

import numpy as np

# THEORY §2, typed from the document: tap numbers (0 = structural zero).
THEORY_MATRIX = np.array(
    [
        [5, 6, 0, 8, 9, 0, 0, 0, 0],
        [4, 5, 6, 7, 8, 9, 0, 0, 0],
        [0, 4, 5, 0, 7, 8, 0, 0, 0],
        [2, 3, 0, 5, 6, 0, 8, 9, 0],
        [1, 2, 3, 4, 5, 6, 7, 8, 9],
        [0, 1, 2, 0, 4, 5, 0, 7, 8],
        [0, 0, 0, 2, 3, 0, 5, 6, 0],
        [0, 0, 0, 1, 2, 3, 4, 5, 6],
        [0, 0, 0, 0, 1, 2, 0, 4, 5],
    ]
)
