"""The two-layer conv net of THEORY §3, checked once at the public entry.

Kernels u and v, the image shape, data ``x`` and targets ``y`` in channel-first layout.
"""

from __future__ import annotations

import numpy as np

from .._validation import (
    InvalidParameterError,
    check_array,
    check_conv_weight,
    check_image_shape,
    check_kernel_fits,
)

__all__ = ["check_net", "check_target"]


def check_net(u, v, image_shape, x):
    """Validate the two kernels (and data); return 4-D u, v, (H, W), CN-layout x, spatial shape."""
    v4, nv = check_conv_weight(v, "v")
    u4, nu = check_conv_weight(u, "u")
    if nu != nv:
        raise InvalidParameterError(
            f"`u` and `v` must both be 2-D kernels or both 1-D kernels, got u {np.shape(u)} "
            f"and v {np.shape(v)}"
        )
    if u4.shape[1] != v4.shape[0]:
        raise InvalidParameterError(
            f"`u` has {u4.shape[1]} input channels (axis 1) but `v` has {v4.shape[0]} output "
            f"channels (axis 0); both must equal the number of hidden channels, got u "
            f"{np.shape(u)} and v {np.shape(v)}"
        )
    spatial = check_image_shape(image_shape, nv, "v")
    check_kernel_fits(v4.shape[2:], spatial, "v")
    check_kernel_fits(u4.shape[2:], spatial, "u")
    map_shape = spatial if nv == 2 else spatial[1:]
    xc = None
    if x is not None:
        x = check_array(x, "x", ndim=nv + 2)
        if x.shape[1] != v4.shape[1] or x.shape[2:] != map_shape:
            raise InvalidParameterError(
                f"`x` must have shape (N, {v4.shape[1]}, {', '.join(map(str, map_shape))}) "
                f"(in_ch of `v`, then `image_shape`), got {x.shape}"
            )
        xc = x.reshape(x.shape[0], x.shape[1], *spatial).transpose(1, 0, 2, 3)
    return u4, v4, spatial, xc, map_shape


def check_target(y, xc, u4, spatial, map_shape):
    """Targets ``y`` (N, C_out, *map) in CN layout (C_out, N, H, W), or None."""
    if y is None:
        return None
    if xc is None:
        raise InvalidParameterError(
            "`y` (targets) needs the inputs `x` they belong to; with white input (x=None) "
            "the target is the clean output f(x)"
        )
    y = check_array(y, "y", ndim=len(map_shape) + 2)
    expected = (xc.shape[1], u4.shape[0], *map_shape)
    if y.shape != expected:
        raise InvalidParameterError(
            f"`y` must have shape {expected} (N of `x`, out_ch of `u`, then `image_shape`), "
            f"got {y.shape}"
        )
    return y.reshape(expected[0], expected[1], *spatial).transpose(1, 0, 2, 3)
