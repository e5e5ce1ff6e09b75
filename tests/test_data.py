import numpy as np
import pytest

from regtheory.data import linear_teacher, white_inputs


def test_white_inputs_have_identity_second_moment():
    X = white_inputs(50, 7, seed=0)
    np.testing.assert_allclose(X.T @ X / 50, np.eye(7), atol=1e-12)
    assert np.array_equal(X, white_inputs(50, 7, seed=0))


def test_linear_teacher_spectrum_and_moment():
    task = linear_teacher(400, [3.0, 1.0], d_in=5, d_out=4, noise=0.0, seed=1)
    np.testing.assert_allclose(np.linalg.svd(task.teacher, compute_uv=False)[:2], [3, 1])
    np.testing.assert_allclose(task.T, task.teacher, atol=1e-12)  # noise-free, white X


def test_bad_arguments():
    with pytest.raises(ValueError, match="`n`"):
        white_inputs(3, 5, seed=0)
    with pytest.raises(ValueError, match="singular_values"):
        linear_teacher(10, [1, 2, 3], d_in=2, d_out=4, noise=0.1, seed=0)
    with pytest.raises(ValueError, match="noise"):
        linear_teacher(10, [1], d_in=2, d_out=2, noise=-1.0, seed=0)
