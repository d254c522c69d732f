"""The extra flat field (reprocess.selfcal) recovers a flat error put into a stack of BCDs."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from calibration.bitmask import BBMSK
from reprocess.io import InputError
from reprocess.selfcal import extra_flat, flatfield_observation

SHAPE = (128, 128)


def _stack(tmp_path, *, n=60, seed=3, csm=(0.0,), cr_per_bcd=20):
    """BCDs of a moving sky (level 20-30 MJy/sr, 0.5 % noise, point sources, cosmic rays) seen
    through a flat 2 % off the product's; returns the observation folder and the true flat ratio."""
    rng = np.random.default_rng(seed)
    ratio = 1.0 + 0.02 * rng.standard_normal(SHAPE)
    ratio[40:48, 60:70] *= 0.9                         # a dust-spot shadow the product lacks
    bcd = tmp_path / "obs" / "bcd"
    bcd.mkdir(parents=True)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    for i in range(n):
        level = rng.uniform(20, 30)
        sky = np.full(SHAPE, level)
        for _ in range(8):                              # sources 20-2000 sigma, FWHM 2.4 px
            y0, x0 = rng.uniform(0, SHAPE[0], 2)
            amp = level * 0.005 * 10 ** rng.uniform(1.3, 3.3)
            sky += amp * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * 1.02 ** 2))
        unc = 0.005 * sky
        image = sky * ratio + unc * rng.standard_normal(SHAPE)
        hit = rng.integers(0, SHAPE[0], (cr_per_bcd, 2))
        image[hit[:, 0], hit[:, 1]] += rng.uniform(0.5, 50, cr_per_bcd) * level
        mask = np.zeros(SHAPE, np.int32)
        mask[0, :4] = BBMSK["PMASK"]
        image[0, :4] = np.nan
        h = fits.Header({"CHNLNUM": 1, "CSM_PRED": csm[i % len(csm)], "SCANLEG": i // 30})
        stem = f"SPITZER_M1_1_{i:04d}_0000_1"
        fits.PrimaryHDU(image.astype(np.float32), h).writeto(bcd / f"{stem}_bcd.fits")
        fits.PrimaryHDU(unc.astype(np.float32), h).writeto(bcd / f"{stem}_bunc.fits")
        fits.PrimaryHDU(mask, h).writeto(bcd / f"{stem}_bbmsk.fits")
    return tmp_path / "obs", ratio / np.median(ratio)


def test_extra_flat_recovers_the_flat_ratio_within_its_errors(tmp_path):
    obs, truth = _stack(tmp_path)
    flat, masked = extra_flat(sorted((obs / "bcd").glob("*_bcd.fits")), block=1)   # independent BCDs
    ok = np.isfinite(flat.value)
    # the flat's overall scale (median 1 over noisy pixels) carries a common error of ~0.05 sigma of
    # a pixel (only the pixels near the median move it) that no flat shape depends on: take it out
    scale = np.median(flat.value[ok] / truth[ok])
    pull = ((flat.value - scale * truth) / flat.error)[ok]
    n = pull.size
    # 16380 pixels: median of N(0,1) within 4 of its s.e. 1.25/sqrt(n); the spread's s.e. ~ 1/sqrt(2 n),
    # and the scatter-based errors add ~1/sqrt(2 * 59) of per-pixel noise to it (a Student-t)
    assert abs(scale - 1) < 1e-4
    assert abs(np.median(pull)) < 4 * 1.25 / np.sqrt(n)
    spread = 1.4826 * np.median(np.abs(pull - np.median(pull)))
    assert 0.95 < spread < 1.08, spread
    # the shadow (10 % deep) is recovered, and the flat's error is at the noise limit
    assert np.allclose(flat.value[40:48, 60:70], truth[40:48, 60:70], atol=5 * np.nanmax(flat.error))
    assert np.nanmedian(flat.error) < 1.3 * 0.005 / np.sqrt(60)
    assert 0.0 < masked < 0.15     # sources, cosmic rays and 3-sigma noise peaks, each grown by 3 px
    assert np.isnan(flat.value[0, :4]).all()


def test_flatfield_observation_writes_corrected_bcds_per_mirror_position(tmp_path):
    obs, _ = _stack(tmp_path, n=40, csm=(0.0, 5.0))
    report = flatfield_observation(obs, tmp_path / "out")
    assert sorted(report.flats) == [(0.0,), (5.0,)]
    assert len(report.written) == 40
    out = tmp_path / "out" / "bcd"
    name = report.written[0].name
    before = fits.getdata(obs / "bcd" / name)
    after = fits.getdata(out / name)
    flat = report.flats[(0.0,)].value
    good = np.isfinite(flat)
    np.testing.assert_allclose(after[good], (before / flat)[good], rtol=1e-6)
    assert fits.getheader(out / name)["XFLAT"] is True
    assert (out / "extra_flat.fits").exists()
    assert (fits.getdata(out / name.replace("_bcd", "_bunc"))[good]
            >= fits.getdata(obs / "bcd" / name.replace("_bcd", "_bunc"))[good] / flat[good] * (1 - 1e-6)).all()
    with pytest.raises(FileExistsError):
        flatfield_observation(obs, tmp_path / "out")


def test_bad_input_is_named(tmp_path):
    obs, _ = _stack(tmp_path, n=4)
    victim = sorted((obs / "bcd").glob("*_bunc.fits"))[1]
    victim.unlink()
    with pytest.raises(InputError, match="bunc"):
        flatfield_observation(obs, tmp_path / "out")
    with pytest.raises(InputError, match="input folder"):
        flatfield_observation(obs, obs)
    with pytest.raises(ValueError, match="grouping"):
        flatfield_observation(obs, tmp_path / "o2", grouping="planet")
