"""Stim backgrounds where the sky moves between DCEs (scan maps): reprocess.stim.moving_sky on exact
inputs.  A 16x16 array scans a sky with a compact source by 2.7 pixels per DCE; two flashes; the
responsivity is constant, so each flash's stim-minus-background should be the true D everywhere."""
import numpy as np
import pytest

from reprocess.stim import MovingSky, stim_minus_background
from reprocess.stim.moving_sky import _bilinear

SHAPE = (16, 16)
STEP = 2.7            # pixels the sky moves along rows from one DCE to the next
FLASHES = (4, 10)


def _sky(rows, cols):
    """MIPS units: a gentle gradient and a source of sigma 1.3 px."""
    return 0.8 + 0.01 * rows + 0.6 * np.exp(-((rows - 30.0) ** 2 + (cols - 8.0) ** 2) / (2 * 1.3 ** 2))


def _scan(n=14):
    rng = np.random.default_rng(3)
    illum = 1 + 0.05 * rng.standard_normal(SHAPE)
    dark = 0.02 + 0.005 * rng.standard_normal(SHAPE)
    d_true = 1000.0 * (1 + 0.1 * rng.standard_normal(SHAPE))
    r, c = np.mgrid[0:16, 0:16].astype(float)
    slopes = np.stack([d_true * (illum * _sky(r + j * STEP, c) + dark + (j in FLASHES)) for j in range(n)])
    errs = np.full(slopes.shape, 1e-3)
    is_stim = np.isin(np.arange(n), FLASHES)
    times = np.arange(n, dtype=float)
    match = np.eye(n, dtype=bool)
    coords = {i: [(j, np.stack([r + (i - j) * STEP, c])) for j in (i - 2, i - 1, i + 1, i + 2)]
              for i in FLASHES}
    return slopes, errs, is_stim, times, match, MovingSky(coords, illum, dark), d_true


def test_the_moving_sky_background_recovers_the_flash_where_same_pixels_do_not():
    slopes, errs, is_stim, times, match, moving, d_true = _scan()
    archive = stim_minus_background(slopes, errs, is_stim, times, match, first_stim="keep", min_snr=0)
    ours = stim_minus_background(slopes, errs, is_stim, times, match, first_stim="keep", min_snr=0,
                                 moving=moving)
    assert ours.report["moving_sky_flashes"] == 2
    err_archive = archive.value / d_true - 1
    err_ours = ours.value / d_true - 1
    covered = np.isfinite(err_ours)
    assert covered[:, 3:13].all()          # rows whose sky both neighbours saw
    rms = lambda e: np.sqrt(np.nanmean(e[covered] ** 2))   # noqa: E731
    assert rms(err_archive) > 5 * rms(err_ours)
    assert np.nanmax(np.abs(err_ours)) < 0.05       # bilinear on a 1.3-px source's core


def test_a_flat_sky_is_recovered_exactly():
    slopes, errs, is_stim, times, match, moving, d_true = _scan()
    r, c = np.mgrid[0:16, 0:16].astype(float)
    flat = np.stack([d_true * (moving.illum * 0.9 + moving.dark + (j in FLASHES)) for j in range(len(times))])
    out = stim_minus_background(flat, errs, is_stim, times, match, first_stim="keep", moving=moving)
    ok = np.isfinite(out.value)
    assert ok.sum() > 0.7 * out.value.size
    np.testing.assert_allclose(out.value[ok], np.broadcast_to(d_true, out.value.shape)[ok], rtol=1e-9)


def test_bilinear_value_and_variance():
    image = np.arange(12.0).reshape(3, 4)
    var = np.ones((3, 4))
    value, value_var = _bilinear(image, var, np.array([[0.5, 1.0, 2.5], [0.5, 3.0, 0.0]]))
    np.testing.assert_allclose(value[:2], [2.5, 7.0])
    np.testing.assert_allclose(value_var[:2], [0.25, 1.0])
    assert np.isnan(value[2])               # half a pixel beyond the last row
    image[1, 1] = np.nan
    assert np.isnan(_bilinear(image, var, np.array([[0.5], [0.5]]))[0][0])


@pytest.mark.parametrize("side", ["before", "after"])
def test_a_flash_without_neighbours_on_both_sides_keeps_its_background(side):
    slopes, errs, is_stim, times, match, moving, d_true = _scan()
    keep = (lambda j, i: j < i) if side == "before" else (lambda j, i: j > i)
    moving.coords = {i: [(j, yx) for j, yx in nb if keep(j, i)] for i, nb in moving.coords.items()}
    out = stim_minus_background(slopes, errs, is_stim, times, match, first_stim="keep", min_snr=0,
                                moving=moving)
    assert out.report["moving_sky_flashes"] == 0
