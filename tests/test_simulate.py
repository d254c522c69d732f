"""Simulator: determinism, separable random streams, contracts, and the truth it records."""
import filecmp

import h5py
import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings, strategies as st

from calibration import nonlinearity
from mipssim.config import load_config
from mipssim.observe import simulate


def _raw(d):
    return sorted((d / "raw").glob("*_raw.fits"))


def test_same_seed_gives_bit_identical_raw_files(tmp_path):
    cfg = load_config(n_dce=8, seed=3)
    simulate(cfg, tmp_path / "a")
    simulate(cfg, tmp_path / "b")
    a, b = _raw(tmp_path / "a"), _raw(tmp_path / "b")
    assert len(a) == 8
    for fa, fb in zip(a, b):
        assert filecmp.cmp(fa, fb, shallow=False)
    simulate(load_config(n_dce=8, seed=4), tmp_path / "c")
    assert not filecmp.cmp(a[0], _raw(tmp_path / "c")[0], shallow=False)


def test_switching_cosmic_rays_off_leaves_other_noise_unchanged(tmp_path):
    base = dict(n_dce=3, seed=5, include_nonlinearity=False, include_cr_responsivity=False)
    simulate(load_config(**base), tmp_path / "on")
    simulate(load_config(**base, include_cosmic_rays=False), tmp_path / "off")
    with h5py.File(tmp_path / "on" / "truth.h5") as t:
        events = {n: t["dce"][n]["cr_events"][()] for n in t["dce"]}
    for f_on, f_off in zip(_raw(tmp_path / "on"), _raw(tmp_path / "off")):
        d = fits.getdata(f_on).astype(float) - fits.getdata(f_off).astype(float)
        ev = events[f_on.name[:-len("_raw.fits")]]
        expected = np.zeros(d.shape)
        for e in ev:
            expected[e["read"]:, e["y"], e["x"]] += e["amplitude_dn"]
        # identical Poisson and read noise: the difference is the recorded cosmic-ray charge,
        # up to rounding to integer DN and the A/D ceiling
        unclipped = fits.getdata(f_on) < 65535
        assert np.all(np.abs(d - expected)[unclipped] <= 1.0)


def test_raw_files_follow_the_contract(tmp_path):
    simulate(load_config(n_dce=6, band=160), tmp_path)
    files = _raw(tmp_path)
    assert files[0].name == "SPITZER_M3_12345678_0000_0000_0_raw.fits"
    hdr = fits.getheader(files[-1])
    for key in ("INSTRUME", "CHNLNUM", "AORKEY", "EXPID", "DCENUM", "SAMPTIME", "EXPTIME", "MJD_OBS",
                "STIMFLSH", "AOT_TYPE", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "PA", "CD1_1", "A_2_0"):
        assert key in hdr, key
    assert hdr["STIMFLSH"] is True and hdr["SAMPTIME"] == pytest.approx(0.131072)
    data = fits.getdata(files[0])
    assert data.shape == (80, 3, 20) and data.dtype.kind in "iu"
    with h5py.File(tmp_path / "truth.h5") as t:
        assert t.attrs["schema"] == "mips-truth/1" and t.attrs["seed"] == 1
        g = t["dce"][files[0].name[:-len("_raw.fits")]]
        assert g["sky_mjysr"].shape == (3, 20) and g["slope_dn_s"].shape == (3, 20)
        assert set(g["cr_events"].dtype.names) == {"read", "y", "x", "amplitude_dn"}
        assert set(t["sources"].dtype.names) >= {"ra", "dec", "flux_jy_24", "flux_jy_70", "flux_jy_160"}


def test_noiseless_ramp_mean_matches_truth_slope(tmp_path):
    """With every noise off, the linearised ramp's slope is the recorded truth slope (to rounding)."""
    off = dict(include_poisson=False, include_read_noise=False, include_reset_noise=False,
               include_cosmic_rays=False, include_excess_noise=False)
    simulate(load_config(n_dce=2, **off), tmp_path)
    from calibration.products import load_products
    prod = load_products(70)
    with h5py.File(tmp_path / "truth.h5") as t:
        f = _raw(tmp_path)[0]
        true = t["dce"][f.name[:-len("_raw.fits")]]["slope_dn_s"][()]
    raw = fits.getdata(f).astype(float)[:40]      # before any saturation at these levels
    q = nonlinearity.inverse(raw - prod.enl_zero, prod.enl_beta)
    slope = (q[-1] - q[0]) / (39 * 0.131072)
    good = (prod.pmask == 0) & (true < 1000)
    np.testing.assert_allclose(slope[good], true[good], rtol=2e-3, atol=0.05)


@settings(max_examples=50, deadline=None)
@given(q=st.floats(0, 59000), beta=st.floats(0, 0.08))
def test_nonlinearity_inverse_inverts_forward(q, beta):
    assert nonlinearity.inverse(nonlinearity.forward(q, beta), beta) == pytest.approx(q, rel=1e-9, abs=1e-7)


def test_existing_observation_is_not_overwritten(tmp_path):
    simulate(load_config(n_dce=2), tmp_path)
    with pytest.raises(FileExistsError, match="--overwrite"):
        simulate(load_config(n_dce=2), tmp_path)
    simulate(load_config(n_dce=2), tmp_path, overwrite=True)
