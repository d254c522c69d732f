"""A flash's background where the sky moves between DCEs (scan maps): the sky its pixels saw elsewhere.

In a scan map the telescope slews steadily and the scan mirror freezes the sky on the array only
during each DCE, so no sky DCE ever shares a flash's pointing: the DCE before a flash saw the sky a
few pixels up-scan, the one after it a few pixels down-scan.  The archive subtracted the same
pixel's values in the neighbouring DCEs (the sky those DCEs put on that pixel), which is right only
where the sky is flat over the scan step; on a source or a cirrus gradient that pixel saw something
else, and the error goes straight into the responsivity of every BCD that flash calibrates.

Here the neighbouring sky DCEs are first brought to the sky's own units, free of the pixel
response: ``m_j = (slope_j / D(t_j) - dark) / ILLUM`` (what their BCDs would be, before FLUXCONV,
with ``D`` interpolated from the current flashes).  Each is resampled (bilinear) at the sky
positions of the flash's pixels, and their weighted mean is the sky each flash pixel ``p`` saw,
``m(p)``.  In the flash pixel's own stim units its background is ``a(p) = ILLUM_p m(p) +
dark_p``, and the flash DCE saw ``D_p (1 + a(p))``.  Interpolation on a point source's core
leaves an error of order its curvature times the pixel, larger than the noise only on bright
sources; the flash test discards pixels whose stim-minus-background is not significant.  The
responsivity the neighbours are divided by comes from the flashes being measured, so the pipeline
iterates (twice is enough: the responsivity enters only through the neighbours' percent-level
drift).

The caller (the pipeline, which has the WCS) gives, for every flash, the pixel coordinates its
pixel centres fall at in each neighbouring sky DCE (:class:`MovingSky`); everything here is arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .response import StimResponse, interpolate_response
from .sky_model import flash_from_background

__all__ = ["MovingSky", "moving_sky_backgrounds"]


@dataclass
class MovingSky:
    """Where a flash's pixels fell in its neighbouring sky DCEs, and the maps that carry the sky
    from one pixel to another.

    ``coords[i]`` lists ``(j, yx)`` for flash DCE ``i``: a sky DCE ``j`` and the (2, NY, NX)
    pixel coordinates (row, column; 0-based) of flash ``i``'s pixel centres in DCE ``j``.
    ``illum`` is the illumination correction, ``dark`` the dark in stim units (the products').
    """

    coords: dict[int, list[tuple[int, np.ndarray]]] = field(default_factory=dict)
    illum: np.ndarray | None = None
    dark: np.ndarray | None = None


def moving_sky_backgrounds(stim: StimResponse, kept_idx: list, slopes, errs, times,
                           moving: MovingSky, *, anomalous_first: bool) -> set:
    """Re-measure every flash of ``moving.coords`` against the sky its pixels saw in the
    neighbouring DCEs (in place, module notes); returns which flashes (positions k in ``stim``).

    A flash needs a neighbour before and after it in time (the sky's own drift
    with the responsivity then cancels to first order); otherwise it keeps its
    background from the same pixels of the neighbouring DCEs.
    """
    done = set()
    for k, i in enumerate(kept_idx):
        neighbours = moving.coords.get(i, [])
        t_j = np.array([times[j] for j, _ in neighbours])
        if not ((t_j < times[i]).any() and (t_j > times[i]).any()):
            continue
        sky, sky_var = _resampled_sky(stim, neighbours, slopes, errs, times, moving)
        a = moving.illum * sky + moving.dark
        a_var = moving.illum ** 2 * sky_var
        if flash_from_background(stim, k, i, a, a_var, slopes, errs, times,
                                 anomalous_first=anomalous_first):
            done.add(k)
    return done


def _resampled_sky(stim, neighbours, slopes, errs, times, moving):
    """Weighted mean over the neighbours of their sky (MIPS units, before FLUXCONV) at the flash's
    pixels, and its variance; NaN where no neighbour covers a pixel."""
    num = den = 0.0
    for j, yx in neighbours:
        d, d_err, _ = interpolate_response(stim, times[j])
        with np.errstate(invalid="ignore", divide="ignore"):
            m = (slopes[j] / d - moving.dark) / moving.illum
            var = ((errs[j] / d) ** 2 + (slopes[j] * d_err / d ** 2) ** 2) / moving.illum ** 2
        m_at, var_at = _bilinear(m, var, yx)
        ok = np.isfinite(m_at) & np.isfinite(var_at) & (var_at > 0)
        w = np.where(ok, 1.0 / np.where(ok, var_at, 1.0), 0.0)
        num = num + w * np.where(ok, m_at, 0.0)
        den = den + w
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den, 1.0 / den


def _bilinear(image: np.ndarray, var: np.ndarray, yx: np.ndarray):
    """``image`` bilinearly interpolated at the (2, ...) coordinates ``yx`` and the variance of
    that interpolation (sum of the squared weights times ``var``: pixels independent); NaN
    outside the image or next to a NaN pixel."""
    ny, nx = image.shape
    y0, x0 = np.floor(yx[0]), np.floor(yx[1])
    fy, fx = yx[0] - y0, yx[1] - x0
    value = np.zeros(yx.shape[1:])
    value_var = np.zeros(yx.shape[1:])
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = (y0 + dy).astype(int), (x0 + dx).astype(int)
            inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
            w = wy * wx
            at = np.where(inside, image[yy.clip(0, ny - 1), xx.clip(0, nx - 1)], np.nan)
            at_var = np.where(inside, var[yy.clip(0, ny - 1), xx.clip(0, nx - 1)], np.nan)
            value = value + np.where(w > 0, w * at, 0.0)       # a zero weight ignores its pixel
            value_var = value_var + np.where(w > 0, w ** 2 * at_var, 0.0)
    return value, value_var
