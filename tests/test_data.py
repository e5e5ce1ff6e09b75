import numpy as np
import pytest

from regtheory import InvalidParameterError, data
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


# ----------------------------------------------------------------------------- MovieLens 100k


def test_movielens_100k_from_the_installed_recbole_wheel():
    obs = data.movielens_100k()
    assert obs.shape == (943, 1682) and obs.n_observed == 100_000
    assert set(np.unique(obs.values)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    # every user rated at least 20 movies (how GroupLens selected them); every movie is rated
    assert np.bincount(obs.rows).min() >= 20 and np.bincount(obs.cols).min() >= 1
    # the same numbers read apart, with the csv module, from the file the loader found
    import csv

    with open(data._recbole_ml100k(), newline="") as handle:
        lines = list(csv.reader(handle, delimiter="\t"))[1:]
    users = sorted({int(line[0]) for line in lines})
    items = sorted({int(line[1]) for line in lines})
    row, col = users.index(int(lines[7][0])), items.index(int(lines[7][1]))
    at = np.flatnonzero((obs.rows == row) & (obs.cols == col))
    assert at.size == 1 and obs.values[at[0]] == float(lines[7][2])
    assert np.isclose(obs.values.mean(), np.mean([float(line[2]) for line in lines]), rtol=1e-12)


def test_movielens_100k_reads_grouplens_u_data_and_recbole_inter(tmp_path):
    u_data = tmp_path / "u.data"
    u_data.write_text("7\t30\t4\t881250949\n3\t30\t1\t881250950\n7\t12\t5\t881250951\n")
    obs = data.movielens_100k(path=u_data)
    assert obs.shape == (2, 2)  # users 3, 7; items 12, 30
    table = {(int(i), int(j)): v for i, j, v in zip(obs.rows, obs.cols, obs.values)}
    assert table == {(1, 1): 4.0, (0, 1): 1.0, (1, 0): 5.0}
    inter = tmp_path / "ml.inter"
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    inter.write_text(header + u_data.read_text())
    same = data.movielens_100k(path=inter)
    assert np.array_equal(same.rows, obs.rows) and np.array_equal(same.values, obs.values)


def test_movielens_100k_refuses_what_is_not_a_ratings_file(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no ratings file"):
        data.movielens_100k(path=tmp_path / "absent")
    three = tmp_path / "three"
    three.write_text("1\t2\t3\n")
    with pytest.raises(InvalidParameterError, match="expected 4"):
        data.movielens_100k(path=three)
    twice = tmp_path / "twice"
    twice.write_text("1\t2\t3\t0\n1\t2\t4\t1\n")
    with pytest.raises(InvalidParameterError, match="twice|repeat"):
        data.movielens_100k(path=twice)
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps recbole"):
        data.movielens_100k()
