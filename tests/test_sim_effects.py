"""Simulator effects for stim-tracking tests: pointing jitter, first stim flash, responsivity steps,
saturation switch, and the truth they leave (issue 9)."""
import h5py
import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from calibration.instrument import band_spec
from mips.cli import main
from mipssim.detector import default_detector
from mipssim.config import load_config
from mipssim.observe import simulate
from mipssim.scene import make_scene
from mipssim.si_as import RESET_LEVEL_DN
from mipssim.streams import effect_rng


def _raw(obs):
    return sorted((obs / "raw").glob("*_raw.fits"))


def _truth_attrs(obs, key):
    with h5py.File(obs / "truth.h5") as t:
        return {n: t["dce"][n].attrs[key] for n in t["dce"]}


def test_jittered_pointing_is_recorded_and_the_sky_follows_the_header(tmp_path):
    base = dict(band=70, n_dce=7, seed=6)
    simulate(load_config(**base, pointing_jitter_arcsec=1.0), tmp_path / "j")
    simulate(load_config(**base, include_pointing_jitter=False), tmp_path / "p")
    offsets = _truth_attrs(tmp_path / "j", "pointing_offset_arcsec")
    planned_offsets = _truth_attrs(tmp_path / "p", "pointing_offset_arcsec")
    cfg = load_config(**base)
    scene = make_scene(cfg, effect_rng(cfg.seed, "scene"))
    with h5py.File(tmp_path / "j" / "truth.h5") as t:
        skies = {n: t["dce"][n]["sky_mjysr"][()] for n in t["dce"]}
    crvals = set()
    for fj, fp in zip(_raw(tmp_path / "j"), _raw(tmp_path / "p")):
        name = fj.name[:-len("_raw.fits")]
        hj, hp = fits.getheader(fj), fits.getheader(fp)
        planned = SkyCoord(hp["CRVAL1"] * u.deg, hp["CRVAL2"] * u.deg)
        true = SkyCoord(hj["CRVAL1"] * u.deg, hj["CRVAL2"] * u.deg)
        east, north = planned.spherical_offsets_to(true)
        np.testing.assert_allclose([east.to_value(u.arcsec), north.to_value(u.arcsec)],
                                   offsets[name], atol=1e-6)
        np.testing.assert_array_equal(planned_offsets[name], [0.0, 0.0])
        # the truth sky is the scene seen through the header's (reconstructed = true) WCS
        np.testing.assert_allclose(scene.render(WCS(hj, naxis=2), band_spec(70).shape), skies[name], rtol=1e-9)
        crvals.add((hj["CRVAL1"], hj["CRVAL2"]))
    assert len(crvals) == 7          # no two DCEs share a pointing, even at the same dither position
    d = np.array(list(offsets.values()))
    assert 0.3 < d.std() < 2.0       # 14 deviates of unit RMS


def test_first_stim_flash_is_brighter_and_recorded(tmp_path):
    base = dict(band=160, n_dce=12, seed=4, include_pointing_jitter=False)
    simulate(load_config(**base, first_stim_factor=1.05), tmp_path / "a")
    simulate(load_config(**base, include_first_stim=False), tmp_path / "b")
    fa = _truth_attrs(tmp_path / "a", "stim_factor")
    fb = _truth_attrs(tmp_path / "b", "stim_factor")
    stims = [n for n, s in _truth_attrs(tmp_path / "a", "stim").items() if s]
    first, second = sorted(stims)
    assert fa[first] == 1.05 and fa[second] == 1.0 and fb[first] == 1.0
    assert all(fa[n] == 0.0 for n in fa if n not in stims)
    with h5py.File(tmp_path / "a" / "truth.h5") as ta, h5py.File(tmp_path / "b" / "truth.h5") as tb:
        diff = ta["dce"][first]["slope_dn_s"][()] - tb["dce"][first]["slope_dn_s"][()]
        extra = (0.05 * band_spec(160).stim_dn_s * ta["detector/stim_pattern"][()]
                 * ta["dce"][first]["responsivity"][()] * default_detector(160).responds)
        np.testing.assert_allclose(diff, extra, rtol=1e-9)
        for n in fa:
            if n != first:
                np.testing.assert_array_equal(ta["dce"][n]["slope_dn_s"][()], tb["dce"][n]["slope_dn_s"][()])
    off = tmp_path / "c"
    simulate(load_config(**base, include_stim=False), off)
    assert set(_truth_attrs(off, "stim_factor").values()) == {0.0}


def test_common_responsivity_steps_shift_every_pixel_and_are_recorded(tmp_path):
    base = dict(band=70, n_dce=12, seed=3, include_pointing_jitter=False)
    simulate(load_config(**base, resp_step_rate_per_hr=200.0, resp_step_size=0.03), tmp_path / "s")
    simulate(load_config(**base), tmp_path / "n")
    with h5py.File(tmp_path / "s" / "truth.h5") as ts, h5py.File(tmp_path / "n" / "truth.h5") as tn:
        steps = ts["responsivity_steps"][()]
        assert len(tn["responsivity_steps"]) == 0 and len(steps) > 0
        assert np.all(np.abs(steps["size"]) == 0.03)
        for name in ts["dce"]:
            g = ts["dce"][name]
            d = g["responsivity"][()] - tn["dce"][name]["responsivity"][()]
            assert np.ptp(d) < 1e-12                      # common to all pixels
            t0 = g.attrs["t_start_s"]
            t1 = t0 + 80 * g.attrs["read_time_s"]
            if not np.any((steps["t_s"] > t0) & (steps["t_s"] < t1)):   # no step inside this DCE
                np.testing.assert_allclose(d.mean(), steps["size"][steps["t_s"] < t0].sum(), atol=1e-12)


def test_truth_times_are_the_middle_of_the_read_intervals(tmp_path):
    simulate(load_config(band=160, n_dce=2, seed=1), tmp_path)
    with h5py.File(tmp_path / "truth.h5") as t:
        for g in t["dce"].values():
            dt = g.attrs["read_time_s"]
            # 80 reads in two ramps of 40: intervals 1..39 and 41..79 (0-based ends); middles k + 1/2
            k = np.r_[1:40, 41:80]
            assert abs(g.attrs["t_mid_s"] - (g.attrs["t_start_s"] + dt * (k + 0.5).mean())) < 1e-9


def test_saturation_switch_ge(tmp_path):
    base = dict(band=70, n_dce=1, seed=2, zodi_mjysr=1000.0, include_nonlinearity=False)
    simulate(load_config(**base), tmp_path / "on")
    simulate(load_config(**base, include_saturation=False), tmp_path / "off")
    on, off = fits.getdata(_raw(tmp_path / "on")[0]), fits.getdata(_raw(tmp_path / "off")[0])
    assert on.dtype == np.uint16 and on.max() == 65535
    assert off.dtype.kind == "i" and off.max() > 100000
    below = on < 65535
    np.testing.assert_array_equal(on[below], off[below])


def test_saturation_switch_si(tmp_path):
    base = dict(band=24, n_dce=2, seed=2, zodi_mjysr=250.0, engineering_ramps=True)
    simulate(load_config(**base), tmp_path / "on")
    simulate(load_config(**base, include_saturation=False), tmp_path / "off")
    with fits.open(_raw(tmp_path / "on")[1]) as h_on, fits.open(_raw(tmp_path / "off")[1]) as h_off:
        on, off = h_on["RAMP"].data.astype(float), h_off["RAMP"].data.astype(float)
        slope_on, slope_off = h_on[0].data[0], h_off[0].data[0]
    cfg = load_config(**base)
    ceiling = RESET_LEVEL_DN + band_spec(24).saturation_dn * (1 + cfg.droop_coeff + cfg.row_droop_coeff)
    assert on.max() < ceiling + 200 < off.max()          # the full well holds the ramp
    assert np.median(slope_on) < 0.9 * np.median(slope_off)


def test_cli_config_file_sets_the_new_parameters(tmp_path, capsys):
    toml = tmp_path / "sim.toml"
    toml.write_text("pointing_jitter_arcsec = 2.5\nfirst_stim_factor = 0.9\n"
                    "resp_step_rate_per_hr = 30.0\nresp_step_size = 0.05\n")
    out = tmp_path / "obs"
    assert main(["simulate", "--band", "70", "--n-dce", "6", "--seed", "9", "--config", str(toml),
                 "--out", str(out)]) == 0
    with h5py.File(out / "truth.h5") as t:
        config = t.attrs["config"]
        factors = [g.attrs["stim_factor"] for g in t["dce"].values()]
    for line in ("pointing_jitter_arcsec = 2.5", "first_stim_factor = 0.9",
                 "resp_step_rate_per_hr = 30.0", "resp_step_size = 0.05"):
        assert line in config
    assert 0.9 in factors
