"""Conv dropout penalty benchmarks (issue 3), each against a baseline measured in the same run.

    python benchmarks/bench_conv.py

The net of THEORY §3 with v (64, 3, 3, 3), u (3, 64, 3, 3) on a 32×32 image,
zero padding, white input, keep 0.5, elementwise dropout. Prints one table:

* the Monte Carlo time to 1 % relative standard error against the closed-form
  penalty (5);
* Monte Carlo masks per second of :func:`regtheory.conv.dropout_penalty_mc`
  against the same estimator written in PyTorch on the CPU (``F.conv2d`` +
  ``F.dropout``; per draw a fresh standard normal x, h = v ∗ x, deviation
  u ∗ (dropout(h) − h), draw = ‖deviation‖²), batched over the same number of
  masks, in float64 and in float32;
* the GFLOP/s of our Monte Carlo loop (flops of the two convolutions per mask)
  against ``numpy.matmul`` on the two GEMMs that ``_convops.conv_cn_block``
  performs for one batch: the im2col product (C_hid, C_in·k²) @ (C_in·k², B·H·W)
  for v, and the tap product (C_out·k², C_hid) @ (C_hid, B·(H+2p)(W+2p)) for u
  (fewer outputs than inputs, so channels are mixed first).

The machine may be shared: every timing is the best of several runs, and the
three Monte Carlo implementations are timed in interleaved rounds so that load
hits them alike. torch runs with ``torch.set_num_threads(2)``; numpy's BLAS
with its default threads.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from _timing import best_time, report_targets

from regtheory import conv
from regtheory.montecarlo import _chunks

KEEP = 0.5
IMAGE = (32, 32)
C_IN, C_HID, C_OUT, K = 3, 64, 3, 3
TORCH_THREADS = 2


def default_batch() -> int:
    # the batch dropout_penalty_mc picks without `batch_size` (white input: one datum per mask)
    per_mask = max(C_IN, C_HID, C_OUT) * IMAGE[0] * IMAGE[1]
    return int(np.clip(_chunks.BATCH_ENTRIES // per_mask, 1, 4096))


def torch_penalty_mc(u, v, n_masks: int, batch: int, dtype, seed: int = 0) -> np.ndarray:
    """The draws of our white-input estimator, in torch: ‖u ∗ (dropout(v ∗ x) − v ∗ x)‖²."""
    torch.manual_seed(seed)
    ut = torch.from_numpy(u).to(dtype)
    vt = torch.from_numpy(v).to(dtype)
    draws = []
    with torch.inference_mode():
        for start in range(0, n_masks, batch):
            size = min(batch, n_masks - start)
            x = torch.randn((size, C_IN, *IMAGE), dtype=dtype)
            h = F.conv2d(x, vt, padding=K // 2)
            y = F.conv2d(F.dropout(h, p=1.0 - KEEP, training=True) - h, ut, padding=K // 2)
            draws.append(y.square().sum(dim=(1, 2, 3)))
    return torch.cat(draws).double().numpy()


def gemms(a1, b1, a2, b2, n_batches: int, o1=None, o2=None) -> None:
    """The two GEMMs of conv2d's Monte Carlo batch, ``n_batches`` times; each result is
    dropped before the next batch, as in the Monte Carlo loop."""
    for _ in range(n_batches):
        np.matmul(a1, b1, out=o1)
        np.matmul(a2, b2, out=o2)


def main() -> None:
    torch.set_num_threads(TORCH_THREADS)
    rng = np.random.default_rng(0)
    v = rng.normal(size=(C_HID, C_IN, K, K))
    u = rng.normal(size=(C_OUT, C_HID, K, K))
    batch = default_batch()
    rows, notes = [], []

    # -- closed form against Monte Carlo to 1 % relative standard error
    closed = conv.dropout_penalty(u, v, KEEP, IMAGE)
    t_closed = best_time(lambda: conv.dropout_penalty(u, v, KEEP, IMAGE), repeat=50)
    t_channel = best_time(
        lambda: conv.dropout_penalty(u, v, KEEP, IMAGE, mode="channel"), repeat=50
    )
    notes.append(
        f"closed forms on this layer: (5) elementwise {t_closed * 1e3:.2f} ms, "
        f"(6) channel {t_channel * 1e3:.2f} ms"
    )

    def mc_to_1pc():
        return conv.dropout_penalty_mc(u, v, KEEP, IMAGE, n_masks=10**6, seed=0, rtol=0.01)

    est = mc_to_1pc()
    t_mc = best_time(mc_to_1pc, repeat=5)
    rows.append(
        (
            f"MC to 1% rel. SE ({est.n_samples} masks)",
            f"{t_mc:.4f} s",
            f"dropout_penalty {t_closed * 1e6:.0f} us",
            t_mc / t_closed,
            None,
            None,
        )
    )
    # The variance of the draws says how many masks 1 % really needs; estimate() stops
    # no earlier than its min_samples = 1000 and then at a batch boundary.
    needed = int(np.ceil(est.n_samples * (est.rel_stderr / 0.01) ** 2))
    notes.append(
        f"MC {est.mean:.6g} ± {est.stderr:.2g} (rel. SE {est.rel_stderr:.2%}), closed form "
        f"{closed:.6g}, z = {est.zscore(closed):+.2f}; 1 % rel. SE needs ~{needed} masks by "
        f"the draws' variance: the {est.n_samples} come from estimate()'s 1000-sample floor "
        f"rounded up to batches of {batch}"
    )

    # -- masks per second: ours against torch (float64, float32), and the numpy.matmul
    # GEMMs of one batch, all in interleaved rounds so that load hits them alike
    H, W = IMAGE
    p = K // 2
    a1 = rng.normal(size=(C_HID, C_IN * K * K))
    b1 = rng.normal(size=(C_IN * K * K, batch * H * W))
    a2 = rng.normal(size=(C_OUT * K * K, C_HID))
    b2 = rng.normal(size=(C_HID, batch * (H + 2 * p) * (W + 2 * p)))
    o1, o2 = np.empty((a1.shape[0], b1.shape[1])), np.empty((a2.shape[0], b2.shape[1]))
    n_batches = 16
    n_masks = n_batches * batch
    impls = {
        "ours": lambda: conv.dropout_penalty_mc(u, v, KEEP, IMAGE, n_masks=n_masks, seed=1),
        "torch64": lambda: torch_penalty_mc(u, v, n_masks, batch, torch.float64),
        "torch32": lambda: torch_penalty_mc(u, v, n_masks, batch, torch.float32),
        # the GEMMs of as many batches, as conv2d calls them (`w @ cols`, a fresh output),
        # and the GEMM kernel alone (a preallocated output)
        "gemm": partial(gemms, a1, b1, a2, b2, n_batches),
        "gemm_out": partial(gemms, a1, b1, a2, b2, n_batches, o1, o2),
    }
    for fn in impls.values():  # warm-up (allocator, torch kernels)
        fn()
    best = dict.fromkeys(impls, np.inf)
    for _ in range(5):
        for name, fn in impls.items():
            best[name] = min(best[name], best_time(fn, repeat=1))
    rate = {name: n_masks / best[name] for name in ("ours", "torch64", "torch32")}
    for name, label, target in (("torch64", "float64", 1.5), ("torch32", "float32", None)):
        rows.append(
            (
                f"MC masks/s, ours vs torch {label}",
                f"{rate['ours']:.0f} /s",
                f"torch {label} {rate[name]:.0f} /s",
                rate["ours"] / rate[name],
                target,
                None if target is None else rate["ours"] / rate[name] >= target,
            )
        )
    draws = torch_penalty_mc(u, v, 4 * n_masks, batch, torch.float64, seed=2)
    t_se = draws.std(ddof=1) / np.sqrt(draws.size)
    notes.append(
        f"torch float64 estimator: {draws.mean():.6g} ± {t_se:.2g} over {draws.size} masks, "
        f"z = {(draws.mean() - closed) / t_se:+.2f} against the closed form; "
        f"batches of {batch} masks (dropout_penalty_mc's default), {n_masks} masks per "
        f"timing, torch.set_num_threads({TORCH_THREADS})"
    )

    # -- GFLOP/s of our loop against numpy.matmul on the GEMMs conv2d performs
    flops_per_mask = 2 * C_IN * C_HID * K * K * H * W + 2 * C_HID * C_OUT * K * K * H * W
    gemm_flops = 2 * (a1.size * b1.shape[1] + a2.size * b2.shape[1]) * n_batches
    ours_gflops = rate["ours"] * flops_per_mask / 1e9
    for suffix, label, target in (("", "numpy.matmul", 0.30), ("_out", "matmul out=", None)):
        gflops = gemm_flops / best["gemm" + suffix] / 1e9
        rows.append(
            (
                "MC loop GFLOP/s, ours",
                f"{ours_gflops:.2f} GFLOP/s",
                f"{label} {gflops:.1f} GFLOP/s",
                ours_gflops / gflops,
                target,
                None if target is None else ours_gflops / gflops >= target,
            )
        )
    notes.append(
        f"{flops_per_mask / 1e6:.2f} MFLOP per mask (two convolutions); the GEMMs of one "
        f"batch: ({a1.shape[0]}x{a1.shape[1]})@({b1.shape[0]}x{b1.shape[1]}) im2col for v, "
        f"({a2.shape[0]}x{a2.shape[1]})@({b2.shape[0]}x{b2.shape[1]}) taps for u; "
        f"x {n_batches} batches per timing; 'numpy.matmul' allocates its output as conv2d "
        "does, 'matmul out=' reuses one"
    )

    print(
        f"{'benchmark':<36} {'time or rate':>17}  {'baseline':<30} {'ratio':>9}  "
        f"{'target':<8} result"
    )
    for name, value, base, ratio, target, met in rows:
        shown = "" if target is None else f">= {target:g}"
        result = "" if met is None else ("met" if met else "MISSED")
        print(f"{name:<36} {value:>17}  {base:<30} {ratio:>9.4g}  {shown:<8} {result}")
    report_targets(rows, notes)


if __name__ == "__main__":
    main()
