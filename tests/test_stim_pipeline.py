"""Stim tracking in the Ge pipeline: real-pointing jitter, flashes that did not fire, no flash at all.

A 60-DCE 70 um AOR (10 flashes) is simulated once, without the flight excess noise (these tests are
about the flashes' bookkeeping, and the excess noise alone puts ~0.5 % RMS into a DCE's median);
each test edits a copy of its raw files.  The calibration-error bound (median BCD/sky - 1 per DCE
within 1 %) is far above the tracking's own error (~0.1 %) and far below what a failure gives
(all-NaN BCDs, or 1600x too bright).
"""
import shutil

import h5py
import numpy as np
import pytest
from astropy.io import fits

from mips.cli import main
from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.ge_pipeline import reprocess_ge
from reprocess.io import InputError


@pytest.fixture(scope="module")
def obs60(tmp_path_factory):
    d = tmp_path_factory.mktemp("obs60")
    simulate(load_config(band=70, n_dce=60, seed=5, include_excess_noise=False), d)
    return d


def _copy(src, dst):
    shutil.copytree(src / "raw", dst / "raw")
    shutil.copy(src / "truth.h5", dst / "truth.h5")
    return sorted((dst / "raw").glob("*_raw.fits"))


def _edit(paths, fn):
    for p in paths:
        with fits.open(p, mode="update") as h:
            fn(h[0].header)


def _cal_errors(obs):
    out = []
    with h5py.File(obs / "truth.h5", "r") as truth:
        good = (truth["detector/pmask"][()] & 16644) == 0
        for name, g in truth["dce"].items():
            if g.attrs["stim"]:
                continue
            bcd = fits.getdata(obs / "bcd" / f"{name}_bcd.fits")
            out.append(np.nanmedian((bcd / g["sky_mjysr"][()] - 1)[good]))
    return np.array(out)


@pytest.mark.parametrize("jitter_arcsec", [0.3, 1.0])
def test_reconstructed_pointing_jitter_keeps_every_flash(obs60, tmp_path, jitter_arcsec):
    paths = _copy(obs60, tmp_path)
    rng = np.random.default_rng(7)

    def jitter(h):
        h["CRVAL1"] += rng.normal(0, jitter_arcsec) / 3600 / np.cos(np.radians(h["CRVAL2"]))
        h["CRVAL2"] += rng.normal(0, jitter_arcsec) / 3600
    _edit(paths, jitter)
    rep = reprocess_ge(tmp_path)
    assert rep.n_stim == 10
    err = _cal_errors(tmp_path)
    assert np.isfinite(err).all() and np.abs(err).max() < 0.01
    assert fits.getval(next((tmp_path / "bcd").glob("*_bcd.fits")), "STIMUSED") == 10


def test_flash_that_did_not_fire_is_refused(tmp_path):
    simulate(load_config(band=70, n_dce=12, seed=5, include_stim=False), tmp_path)
    with pytest.raises(InputError, match="no usable stim flash.*did it fire"):
        reprocess_ge(tmp_path)
    assert not (tmp_path / "bcd").exists()


def test_no_stim_dce_is_a_one_line_error(obs60, tmp_path, capsys):
    paths = _copy(obs60, tmp_path)
    _edit(paths, lambda h: h.__setitem__("STIMFLSH", False))
    assert main(["reprocess", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no usable stim flash among 0" in err


def test_dces_of_different_lengths_are_fitted_with_their_own_timing(obs60, tmp_path):
    paths = _copy(obs60, tmp_path)
    short = paths[2]                                   # a sky DCE: keep its first 60 of 80 reads
    with fits.open(short) as h:
        hdr, data = h[0].header.copy(), h[0].data[:60].copy()
    hdr["EXPTIME"] = 60 * hdr["SAMPTIME"]
    fits.writeto(short, data, hdr, overwrite=True)
    reprocess_ge(tmp_path)
    name = short.name[: -len("_raw.fits")]
    with h5py.File(tmp_path / "truth.h5", "r") as truth:
        good = (truth["detector/pmask"][()] & 16644) == 0
        sky = truth["dce"][name]["sky_mjysr"][()]
    bcd = fits.getdata(tmp_path / "bcd" / f"{name}_bcd.fits")
    assert abs(np.nanmedian((bcd / sky - 1)[good])) < 0.01


def test_the_sky_dce_after_each_flash_carries_the_stim_latent_bit(obs60, tmp_path):
    _copy(obs60, tmp_path)
    reprocess_ge(tmp_path)
    with h5py.File(tmp_path / "truth.h5", "r") as truth:
        names = sorted(truth["dce"])
        stim = [bool(truth["dce"][n].attrs["stim"]) for n in names]
    latent_bit = 1 << 12
    for i, name in enumerate(names):
        if stim[i]:
            continue
        mask = fits.getdata(tmp_path / "bcd" / f"{name}_bmask.fits")
        after_flash = i > 0 and stim[i - 1]
        assert np.all((mask & latent_bit) != 0) == after_flash, name
        assert np.any((mask & latent_bit) != 0) == after_flash, name
