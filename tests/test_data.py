import numpy as np
import pytest

from regtheory import data
from regtheory.data import conv_task, linear_teacher, white_inputs


def test_white_inputs_have_identity_second_moment():
    X = white_inputs(50, 7, rng=0)
    np.testing.assert_allclose(X.T @ X / 50, np.eye(7), atol=1e-12)
    assert np.array_equal(X, white_inputs(50, 7, rng=0))


def test_linear_teacher_spectrum_and_moment():
    task = linear_teacher(400, [3.0, 1.0], d_in=5, d_out=4, noise=0.0, rng=1)
    np.testing.assert_allclose(np.linalg.svd(task.teacher, compute_uv=False)[:2], [3, 1])
    np.testing.assert_allclose(task.T, task.teacher, atol=1e-12)  # noise-free, white X


def test_bad_arguments():
    with pytest.raises(ValueError, match="`n`"):
        white_inputs(3, 5, rng=0)
    with pytest.raises(ValueError, match="singular_values"):
        linear_teacher(10, [1, 2, 3], d_in=2, d_out=4, noise=0.1, rng=0)
    with pytest.raises(ValueError, match="noise"):
        linear_teacher(10, [1], d_in=2, d_out=2, noise=-1.0, rng=0)


def test_conv_task_white_and_natural():
    teacher = np.array([0.2, -0.5, 1.0, 0.3, 0.1])
    task = conv_task(16, teacher, n_train=64, n_test=32, noise=0.0, rng=0)
    X = task.X[:, 0]
    np.testing.assert_allclose(X.T @ X / 64, np.eye(16), atol=1e-12)
    # noise-free targets are the circular correlation with the teacher, by explicit rolls
    expected = sum(t * np.roll(X, -(i - 2), axis=1) for i, t in enumerate(teacher))
    np.testing.assert_allclose(task.Y[:, 0], expected, atol=1e-12)
    nat = conv_task(64, teacher, n_train=4000, n_test=10, noise=0.1, rng=1, inputs="natural")
    power = np.mean(np.abs(np.fft.fft(nat.X[:, 0], axis=1)) ** 2, axis=0)
    assert power[1] > 5 * power[20]  # 1/f: low frequencies dominate
    assert np.mean(nat.X**2) == pytest.approx(1.0, rel=0.05)


def test_conv_task_bad_arguments():
    with pytest.raises(ValueError, match="teacher"):
        conv_task(4, np.ones(9), 10, 10, 0.1, rng=0)
    with pytest.raises(
        ValueError, match="teacher"
    ):  # longer than the signal: not a same-size kernel
        conv_task(5, np.ones(7), 10, 10, 0.1, rng=0)
    with pytest.raises(ValueError, match="inputs"):
        conv_task(8, np.ones(3), 10, 10, 0.1, rng=0, inputs="pink")


def test_teacher_kernel_has_2k_minus_1_taps_of_unit_expected_energy():
    # ‖t‖² is (1/(2K−1))·χ²(2K−1): mean 1, variance 2/(2K−1); over 2000 seeds the mean
    # lies within 4 standard errors of 1
    K = 3
    energies = np.array([np.sum(data.teacher_kernel(K, rng=s) ** 2) for s in range(2000)])
    assert data.teacher_kernel(K, rng=0).shape == (2 * K - 1,)
    se = np.sqrt(2 / (2 * K - 1) / len(energies))
    assert abs(energies.mean() - 1.0) < 4 * se
    np.testing.assert_array_equal(data.teacher_kernel(K, rng=7), data.teacher_kernel(K, rng=7))


def test_old_seed_spellings_still_work_and_warn():
    with pytest.warns(DeprecationWarning, match="rng="):
        assert np.array_equal(white_inputs(20, 3, 4), white_inputs(20, 3, rng=4))
    with pytest.warns(DeprecationWarning, match="rng="):
        assert np.array_equal(white_inputs(20, 3, seed=4), white_inputs(20, 3, rng=4))
    with pytest.warns(DeprecationWarning, match="rng="):
        old = linear_teacher(30, [2.0], 3, 3, 0.1, 5)
    assert np.array_equal(old.Y, linear_teacher(30, [2.0], 3, 3, 0.1, rng=5).Y)
    with pytest.warns(DeprecationWarning, match="rng="):
        old_task = conv_task(5, np.ones(3), 10, 10, 0.1, 2)
    assert np.array_equal(old_task.Y_test, conv_task(5, np.ones(3), 10, 10, 0.1, rng=2).Y_test)
    with pytest.warns(DeprecationWarning, match="rng="):
        assert np.array_equal(data.teacher_kernel(3, seed=1), data.teacher_kernel(3, rng=1))
    # a Generator is used as it is: two tasks from one stream differ
    gen = np.random.default_rng(0)
    assert not np.array_equal(white_inputs(5, 2, rng=gen), white_inputs(5, 2, rng=gen))
