"""The validation figures measure what they claim, and their goals follow the sample size.

Synthetic BCD sets (no pipeline): ``BCD = sky * (1 + bias_p) + unc * N(0, 1)``
with a known per-pixel bias, written to disk with ``RAWSHA1`` cards and scored
by :func:`mips.validate.score_bcds`.  Without bias the pulls are N(0, 1) by
construction, so every BCD goal must be met; with a per-pixel bias of RMS f
the per-pixel figure must equal ``sqrt(1 + (f sqrt(n) / rel)^2)`` within its
sampling error (rel = unc / sky).
"""
from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
from astropy.io import fits

from calibration.bitmask import BMASK
from mips.validate import GOALS, K_SIGMA, check_identity, judge, score_bcds

SHAPE = (32, 32)
N_DCE = 30
REL = 0.005      # unc / sky


def _write_set(obs, *, bias_rms=0.0, seed=0):
    """A truth.h5 + raw/ + bcd/ of N_DCE DCEs whose BCDs carry a per-pixel bias of RMS ``bias_rms``."""
    rng = np.random.default_rng(seed)
    (obs / "raw").mkdir(parents=True)
    (obs / "bcd").mkdir()
    bias = bias_rms * rng.standard_normal(SHAPE)
    pmask = np.zeros(SHAPE, np.int32)
    pmask[:, 16:] = 1 << 14
    names = []
    with h5py.File(obs / "truth.h5", "w") as truth:
        truth.attrs["config"] = "band = 70\n"
        truth["detector/pmask"] = pmask
        for k in range(N_DCE):
            name = f"SPITZER_M2_1_0000_{k:04d}_0"
            names.append(name)
            raw = obs / "raw" / f"{name}_raw.fits"
            raw.write_bytes(rng.bytes(2880))
            sky = 10.0 + 5.0 * rng.random(SHAPE)
            unc = REL * sky
            bcd = sky * (1 + bias) + unc * rng.standard_normal(SHAPE)
            g = truth.create_group(f"dce/{name}")
            g["sky_mjysr"] = sky
            g.attrs["t_start_s"] = 11.0 * k
            g.attrs["stim"] = False
            hdr = fits.Header({"RAWFILE": raw.name,
                               "RAWSHA1": hashlib.sha1(raw.read_bytes()).hexdigest()})
            mask = np.where(pmask != 0, BMASK["PMASK"], 0).astype(np.int32)
            for kind, data in (("bcd", bcd), ("bunc", unc), ("bmask", mask)):
                fits.writeto(obs / "bcd" / f"{name}_{kind}.fits", data.astype(
                    np.int32 if kind == "bmask" else np.float32), hdr)
    return names, bias


def _score(obs, names):
    with h5py.File(obs / "truth.h5", "r") as truth:
        res = {"band": 70, **score_bcds(obs, truth, names, band=70, expected=N_DCE)}
    res["checks"] = judge(res)
    return res


def test_unbiased_bcds_meet_every_bcd_goal(tmp_path):
    names, _ = _write_set(tmp_path, seed=1)
    assert sorted(check_identity(tmp_path)) == names
    res = _score(tmp_path, names)
    assert res["n_pixels"] == N_DCE * 512 and res["good_fraction"] == 1.0
    assert all(c["met"] for c in res["checks"]), [c for c in res["checks"] if not c["met"]]
    # the per-pixel figure of N(0, 1) pulls: std 1 within K standard errors 1/sqrt(2 M)
    assert abs(res["pixel_bias_spread"] - 1) < K_SIGMA / np.sqrt(2 * 512)


def test_per_pixel_bias_figure_measures_a_flat_error(tmp_path):
    f = 0.002                                          # 0.4 x the per-DCE noise
    names, bias = _write_set(tmp_path, bias_rms=f, seed=2)
    res = _score(tmp_path, names)
    good = np.zeros(SHAPE, bool)
    good[:, :16] = True
    expected = np.sqrt(1 + (bias[good].std() * np.sqrt(N_DCE) / REL) ** 2)   # ~2.4
    assert res["pixel_bias_spread"] == pytest.approx(expected, abs=K_SIGMA / np.sqrt(2 * 512) * expected)
    assert {c["figure"]: c["met"] for c in res["checks"]}["pixel_bias_spread"] is False
    # the per-DCE figures hardly see it: the pull spread grows by sqrt(1 + 0.4^2) ~ 1.08 only
    assert res["bcd_pull_spread"] < 1.12


def _res(**figures):
    base = {"band": 70, "n_pixels": 10 ** 6, "n_bias_pixels": 512, "pixel_bias_spread": 1.0,
            "bcd_pull_median": 0.0, "bcd_pull_spread": 1.0, "n_bcd": 200}
    return {**base, **figures}


def _check(res, figure):
    return next(c for c in judge(res) if c["figure"] == figure)


def test_statistical_tolerances_follow_the_sample_size():
    big = _check(_res(), "bcd_pull_median")
    assert big["high"] == 0.02                                       # the requirement
    small = _check(_res(n_pixels=1400), "bcd_pull_median")
    assert small["high"] == pytest.approx(K_SIGMA * 1.2533 / np.sqrt(1400))
    # correlated pulls (per-pixel bias spread 1.2): the effective sample is N / 1.44
    corr = _check(_res(n_pixels=1400, pixel_bias_spread=1.2), "bcd_pull_median")
    assert corr["high"] == pytest.approx(small["high"] * 1.2)
    # ... but widens no further than the per-pixel goal (1.5) allows
    capped = _check(_res(n_pixels=1400, pixel_bias_spread=9.0), "bcd_pull_median")
    assert capped["high"] == pytest.approx(small["high"] * 1.5)
    spread = _check(_res(n_pixels=1400, bcd_pull_spread=1.1), "bcd_pull_spread")
    assert spread["low"] == pytest.approx(1 - K_SIGMA * 1.1664 / np.sqrt(1400)) and spread["met"]


def test_nan_misses_and_an_empty_sample_is_not_judged():
    assert _check(_res(bcd_pull_median=float("nan")), "bcd_pull_median")["met"] is False
    assert _check(_res(n_pixels=0, bcd_pull_median=float("nan")), "bcd_pull_median")["met"] is None


def test_every_goal_has_a_reason_and_a_bound():
    for g in GOALS:
        assert g.reason and (g.low or g.high)
