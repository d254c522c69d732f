"""Scan maps (issue 13 item 1): the plan's geometry, timing and numbering, a small simulated map,
and photometry mode untouched by the scan parameters."""
import filecmp

import h5py
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from hypothesis import given, settings, strategies as st

from calibration.geometry import array_wcs
from calibration.instrument import band_spec
from mips.cli import main
from mipssim.config import load_config, to_toml
from mipssim.observe import simulate
from mipssim.pointing import plan_photometry
from mipssim.scan import (dce_nreads, dces_per_leg, in_scan_coverage, map_footprint, plan_scan,
                          scan_cadence_s)
from mipssim.scene import make_scene
from mipssim.streams import effect_rng

SMALL = dict(mode="scan", scan_legs=2, scan_leg_arcmin=3.0, scan_overscan_arcmin=0.0)


def _map_pixels(cfg, plans):
    """DCE centres (CRVAL) as (x, y) pixel offsets from the map centre in the array's frame there."""
    wcs = WCS(array_wcs(cfg.band, (cfg.ra_deg, cfg.dec_deg), cfg.pa_deg, distortion=False))
    x0, y0 = wcs.world_to_pixel(SkyCoord(cfg.ra_deg, cfg.dec_deg, unit="deg"))
    x, y = wcs.world_to_pixel(SkyCoord([p.wcs_header["CRVAL1"] for p in plans],
                                       [p.wcs_header["CRVAL2"] for p in plans], unit="deg"))
    return np.asarray(x) - x0, np.asarray(y) - y0


@pytest.mark.parametrize("band, rate", [(70, "medium"), (24, "slow"), (160, "fast")])
def test_centres_advance_along_y_by_rate_times_cadence_and_legs_alternate(band, rate):
    cfg = load_config(band=band, scan_rate=rate, scan_legs=3, include_pointing_jitter=False,
                      **{k: v for k, v in SMALL.items() if k != "scan_legs"})
    plans = plan_scan(cfg)
    pix = band_spec(band).pixel_arcsec
    x, y = _map_pixels(cfg, plans)
    legs = np.array([p.scan_leg for p in plans])
    n = dces_per_leg(cfg)
    assert np.array_equal(legs, np.repeat(np.arange(3), n))
    advance = cfg.scan_rate_arcsec_s * scan_cadence_s(cfg) / pix
    for leg in range(3):
        sel = legs == leg
        sign = 1 if leg % 2 == 0 else -1            # legs alternate direction along y
        np.testing.assert_allclose(np.diff(y[sel]), sign * advance, atol=1e-6)
        np.testing.assert_allclose(x[sel], (leg - 1) * cfg.scan_step_arcsec / pix, atol=1e-6)
        assert all(p.scan_rate_arcsec_s == sign * cfg.scan_rate_arcsec_s
                   for p, s in zip(plans, sel) if s)


def test_time_steps_cadence_within_a_leg_and_turnaround_between_legs():
    cfg = load_config(band=70, scan_turnaround_s=33.0, **SMALL)
    t = np.array([p.t_start_s for p in plan_scan(cfg)])
    n, cadence = dces_per_leg(cfg), scan_cadence_s(cfg)
    steps = np.diff(t)
    np.testing.assert_allclose(np.delete(steps, n - 1), cadence)
    assert steps[n - 1] == pytest.approx(cadence + 33.0)
    assert cadence == pytest.approx(32 * 0.131072 + cfg.scan_flyback_s)   # 4 MIPS-s DCE: 32 reads


@pytest.mark.parametrize("band", [24, 70, 160])
def test_ioc_default_map_gives_about_1616_dces_per_array_in_about_2_36_h(band):
    cfg = load_config(band=band, mode="scan")         # the IOC-295 map: 16 legs x 30', 111", medium
    assert (cfg.scan_legs, cfg.scan_leg_arcmin, cfg.scan_step_arcsec, cfg.scan_rate) == \
        (16, 30.0, 111.0, "medium")
    n = cfg.scan_legs * dces_per_leg(cfg)
    assert abs(n - 1616) <= 0.03 * 1616
    hours = (n * scan_cadence_s(cfg) + (cfg.scan_legs - 1) * cfg.scan_turnaround_s + 215.0) / 3600
    assert hours == pytest.approx(2.36, rel=0.03)
    if band == 70:
        assert len(plan_scan(cfg)) == n


def test_stim_flashes_at_dcenum_mod_stim_cycle_and_none_at_24um():
    cfg = load_config(band=70, stim_cycle=4, **SMALL)
    for p in plan_scan(cfg):
        assert p.stim == (p.dcenum % 4 == 3)
        assert (p.expid, p.dcenum) == divmod(p.index, 4)
        assert p.nreads == 32
    cfg24 = load_config(band=24, **SMALL)
    plans = plan_scan(cfg24)
    assert not any(p.stim for p in plans)
    assert [(p.expid, p.dcenum) for p in plans] == [(0, i) for i in range(len(plans))]
    assert plans[0].nreads == 8 - cfg24.first_dce_fewer_reads and plans[1].nreads == 8


def test_smear_and_mirror_ramp_follow_the_rate_and_the_leg_direction():
    cfg = load_config(band=70, scan_smear_fraction=0.05, pa_deg=0.0, **SMALL)
    t_exp = dce_nreads(cfg) * band_spec(70).read_time_s
    for p in plan_scan(cfg):
        v = p.scan_rate_arcsec_s
        # PA 0: the array's +y axis points north
        assert p.smear_arcsec == pytest.approx((0.0, 0.05 * v * t_exp))
        assert p.csm_ramp_arcsec == pytest.approx(-0.95 * v * t_exp)
        assert p.csm_arcsec == 0.0                     # the mirror is mid-ramp at mid-DCE


def test_160um_fast_scan_leaves_gaps_the_others_do_not():
    assert in_scan_coverage(load_config(band=160, mode="scan", scan_rate="fast")) < 0.6
    assert in_scan_coverage(load_config(band=160, mode="scan", scan_rate="medium")) == 1.0
    for band in (24, 70):
        assert in_scan_coverage(load_config(band=band, mode="scan", scan_rate="fast")) == 1.0


def test_small_scan_map_simulated_at_70um(tmp_path):
    cfg = load_config(band=70, **SMALL)
    plans = plan_scan(cfg)
    simulate(cfg, tmp_path)
    raws = sorted((tmp_path / "raw").glob("*_raw.fits"))
    assert len(raws) == len(plans) == 2 * dces_per_leg(cfg)
    with h5py.File(tmp_path / "truth.h5") as t:
        assert len(t["dce"]) == len(plans)
        assert 'scan_rate = "medium"' in t.attrs["config"]
        legs = sorted(int(g.attrs["scan_leg"]) for g in t["dce"].values())
        ra, dec = t["sources"]["ra"][()], t["sources"]["dec"][()]
    assert legs == sorted(p.scan_leg for p in plans)
    for path, plan in zip(raws, sorted(plans, key=lambda p: (p.expid, p.dcenum))):
        hdr = fits.getheader(path)
        assert hdr["SCANRATE"] == pytest.approx(6.5) and hdr["AOT_TYPE"] == "MipsScan"
        assert hdr["EXPTYPE"] == "scn" and hdr["STIMFLSH"] == plan.stim
        assert hdr["CRVAL1"] == plan.wcs_header["CRVAL1"] and "CSM_PRED" in hdr
        assert fits.getdata(path).shape == (32, 32, 32)
    # the scene's sources spread over what the arrays see, beyond the photometry field's 2'
    wcs = WCS(array_wcs(70, (cfg.ra_deg, cfg.dec_deg), cfg.pa_deg, distortion=False))
    x, y = wcs.world_to_pixel(SkyCoord(ra, dec, unit="deg"))
    half_along, half_cross = map_footprint(cfg)
    assert np.all(np.abs(y - 15.5) * 9.98 <= half_along + 16 * 9.98 + 1e-6)
    assert np.all(np.abs(x - 7.5) * 9.98 <= half_cross + 16 * 9.98 + 1e-6)
    sep = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(cfg.ra_deg, cfg.dec_deg, unit="deg"))
    assert sep.arcsec.max() > 120.0


def test_photometry_mode_is_untouched_by_the_scan_parameters(tmp_path):
    scan = dict(scan_rate="fast", scan_legs=3, scan_leg_arcmin=7.0, scan_step_arcsec=50.0,
                scan_turnaround_s=5.0, scan_smear_fraction=0.5, scan_overscan_arcmin=1.0)
    a, b = load_config(n_dce=7, seed=2), load_config(n_dce=7, seed=2, **scan)
    assert to_toml(a) == to_toml(b) and "scan_" not in to_toml(a)
    assert plan_photometry(a) == plan_photometry(b)
    assert all(p.smear_arcsec == (0.0, 0.0) and p.scan_leg is None for p in plan_photometry(a))
    sa, sb = make_scene(a, effect_rng(2, "scene")), make_scene(b, effect_rng(2, "scene"))
    assert np.array_equal(sa.sources["ra"], sb.sources["ra"])
    simulate(a, tmp_path / "a")
    simulate(b, tmp_path / "b")
    ra, rb = (sorted((tmp_path / d / "raw").glob("*.fits")) for d in "ab")
    assert len(ra) == 7 and all(filecmp.cmp(x, y, shallow=False) for x, y in zip(ra, rb))
    hdr = fits.getheader(ra[0])
    assert hdr["AOT_TYPE"] == "MipsPhot" and "SCANRATE" not in hdr


@pytest.mark.parametrize("key, value", [("scan_rate", "warp"), ("scan_legs", 0),
                                        ("scan_leg_arcmin", 0.0), ("scan_step_arcsec", -1.0),
                                        ("scan_smear_fraction", 1.0), ("scan_exptime_mips_s", 10),
                                        ("scan_rates_arcsec_s", [1.0, 2.0]),
                                        ("scan_turnaround_s", -5.0), ("mode", "raster")])
def test_bad_scan_parameters_are_refused_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        load_config(**{key: value})


def test_rate_option_is_refused_outside_scan_mode(tmp_path, capsys):
    assert main(["simulate", "--rate", "fast", "--n-dce", "2", "--out", str(tmp_path / "o")]) == 2
    assert "--rate" in capsys.readouterr().err


@settings(max_examples=12, deadline=None)
@given(band=st.sampled_from([24, 70, 160]), rate=st.sampled_from(["slow", "medium", "fast"]),
       legs=st.integers(1, 4), leg_arcmin=st.floats(0.5, 12.0), step=st.floats(0.0, 300.0),
       overscan=st.floats(0.0, 3.0), pa=st.floats(0.0, 359.0), dec=st.floats(-80.0, 80.0),
       jitter=st.booleans())
def test_dce_centres_stay_inside_the_map_footprint(band, rate, legs, leg_arcmin, step, overscan,
                                                   pa, dec, jitter):
    cfg = load_config(band=band, mode="scan", scan_rate=rate, scan_legs=legs,
                      scan_leg_arcmin=leg_arcmin, scan_step_arcsec=step,
                      scan_overscan_arcmin=overscan, pa_deg=pa, dec_deg=dec,
                      include_pointing_jitter=jitter)
    plans = plan_scan(cfg)
    assert len(plans) == legs * dces_per_leg(cfg)
    pix = band_spec(band).pixel_arcsec
    x, y = _map_pixels(cfg, plans)
    slack = 5 * cfg.pointing_jitter_arcsec if jitter else 1e-3        # arcsec
    half_along, half_cross = map_footprint(cfg)
    assert half_along <= 30.0 * (leg_arcmin + overscan)               # inside the scanned length
    assert np.all(np.abs(y * pix) <= half_along + slack)
    assert np.all(np.abs(x * pix) <= half_cross + slack)
