"""Ge calibration maps derived from calibration data (reprocess.calib.ge_maps, .ge) and the
``mips calibrate`` campaign, scored against exact answers and the campaign's truth."""
from __future__ import annotations

import numpy as np
import pytest

from calibration import nonlinearity
from calibration.bitmask import PMASK, PMASK_FATAL
from reprocess.calib.ge_maps import (batch_mean, nonlinearity_beta, normalised_flat,
                                     permanent_mask, dark_ramp_maps)
from reprocess.sloper import saturated_reads


def _dark_ramps(rng, n, *, shape=(16, 16), nreads=40, rn=20.0, zero=2000.0, rate_dn=9.0, gain=7.1,
                cr_rate=0.0, excess_dn2=0.0):
    cubes = []
    for _ in range(n):
        dq = rng.poisson(rate_dn * gain, (nreads,) + shape) / gain
        q = np.cumsum(dq + rng.normal(0, np.sqrt(excess_dn2), dq.shape), axis=0)
        q += np.cumsum(rng.random((nreads,) + shape) < cr_rate, axis=0) * 3000.0
        level = zero + rng.normal(0, 30.0, shape)
        cubes.append(np.rint(level + q + rng.normal(0, rn, (nreads,) + shape)))
    return cubes


def test_batch_mean_error_covers_block_correlated_noise():
    """Noise shared by blocks of 5 entries: the batch-means error is right, a naive one is not."""
    rng = np.random.default_rng(1)
    n, pix = 200, 4000
    shared = np.repeat(rng.normal(0, 1, (n // 5, pix)), 5, axis=0)
    stack = (shared + rng.normal(0, 1, (n, pix)))[:, None, :]
    est = batch_mean(stack, batch=10)
    truth_sigma = np.sqrt(1 / (n / 5) + 1 / n)          # 40 shared draws, 200 independent
    assert np.median(est.error) == pytest.approx(truth_sigma, rel=0.05)
    pulls = est.value / est.error
    assert 0.9 < np.std(pulls) < 1.1


@pytest.mark.parametrize("excess_dn2", [0.0, 850.0])     # none; the 70 um flight level x 0.131 s
def test_read_noise_excess_noise_and_reset_level_are_unbiased_with_honest_errors(excess_dn2):
    rng = np.random.default_rng(2)
    rn, zero, dt = 20.0, 2000.0, 0.131
    maps = dark_ramp_maps(_dark_ramps(rng, 60, rn=rn, zero=zero, cr_rate=0.004, excess_dn2=excess_dn2),
                          nramps=1, gain=7.1, read_time=dt)
    pulls = [((m.value - true) / m.error).ravel() for m, true in
             ((maps.read_noise, rn), (maps.enl_zero, zero), (maps.excess_noise, excess_dn2 / dt))]
    for p in pulls:                       # 256 pixels: median's standard error ~0.08
        assert abs(np.median(p)) < 0.3 and 0.8 < 1.4826 * np.median(np.abs(p - np.median(p))) < 1.25


def test_reset_level_is_not_lifted_by_hits_among_its_first_reads():
    """160 um-like dark ramps (40 reads, flight excess noise) with cosmic rays in any read but the
    first: a hit among the reads the reset level is extrapolated from lifts the reads after it.
    Not undone, hits late in those reads (too few lifted reads to be clipped over ramps) biased
    ENL_ZERO high by 0.22 of its error here (~0.07 in the default 160 um campaign)."""
    rng = np.random.default_rng(12)
    shape, nreads, nramps, zero = (32, 32), 40, 120, 2000.0
    cubes = []
    for _ in range(nramps):
        dq = rng.poisson(3.0 * 7.1, (nreads,) + shape) / 7.1 + rng.normal(0, 41.0, (nreads,) + shape)
        hit = rng.random((nreads,) + shape) < 0.01
        hit[0] = False                                      # charge before read 0 is the reset level's
        dq += hit * 2000.0 * np.exp(rng.normal(0, 1.0, hit.shape))
        level = zero + rng.normal(0, 30.0, shape)
        cubes.append(np.rint(level + np.cumsum(dq, axis=0) + rng.normal(0, 15.0, dq.shape)))
    est = dark_ramp_maps(cubes, nramps=1, gain=7.1, read_time=0.131).enl_zero
    p = ((est.value - zero) / est.error).ravel()
    # 1024 pixels: the mean pull's standard error is 0.031, the spread's (SD) ~0.022
    assert abs(np.mean(p)) < 0.12, np.mean(p)
    assert 0.92 < np.std(p) < 1.08, np.std(p)


def test_nonlinearity_beta_recovers_the_law_through_cosmic_rays():
    rng = np.random.default_rng(3)
    shape, nreads, gain = (16, 16), 50, 7.1
    beta = rng.uniform(0.02, 0.06, shape)
    zero = 2000.0 + rng.normal(0, 100, shape)
    cubes = []
    for _ in range(30):
        dq = rng.poisson(1400 * gain, (nreads,) + shape) / gain
        dq[rng.random(dq.shape) < 0.01] += 2000.0                 # cosmic rays
        q = np.cumsum(dq, axis=0)
        raw = zero + rng.normal(0, 30, shape) + nonlinearity.forward(q, beta)
        cubes.append(np.rint(raw + rng.normal(0, 20, raw.shape)).clip(0, 65535))
    est = nonlinearity_beta(cubes, 11.0 * np.arange(len(cubes)), nramps=1, read_time=0.131,
                            enl_zero=zero, saturation_dn=62500.0)
    p = ((est.value - beta) / est.error).ravel()
    assert abs(np.median(p)) < 0.3
    assert 0.8 < 1.4826 * np.median(np.abs(p - np.median(p))) < 1.25


def test_the_read_before_saturation_is_not_used():
    raw = np.array([[100.0], [200.0], [300.0], [400.0], [500.0]])[:, :, None]
    sat = saturated_reads(raw, 400.0, nramps=1)[:, 0, 0]
    assert sat.tolist() == [False, False, True, True, True]


def test_permanent_mask_finds_noisy_dead_and_a_bad_half():
    rn = np.full((8, 8), 20.0)
    stim = np.full((8, 8), 1000.0)
    rn[:, 4:] = 600.0             # a dead readout half: 30x the read noise
    rn[1, 1] = 200.0              # a noisy pixel
    stim[2, 2] = 10.0             # a dead pixel
    pm = permanent_mask(rn, stim, halves=(slice(0, 4), slice(4, 8)))
    assert (pm[:, 4:] & PMASK["BAD_HALF"]).all()
    assert pm[1, 1] & PMASK["NOISY"] and pm[2, 2] & PMASK["BAD_PIXEL"]
    assert ((pm[:, :4] & PMASK_FATAL) != 0).sum() == 2


def test_normalised_flat_rejects_a_passing_source():
    rng = np.random.default_rng(4)
    flat = 1 + 0.05 * rng.standard_normal((10, 10))
    stack = flat * rng.uniform(0.8, 1.2, (120, 1, 1)) * (1 + 0.01 * rng.standard_normal((120, 10, 10)))
    stack[::7, 3, 3] *= 5.0               # a source crossing one pixel now and then
    est = normalised_flat(stack, np.ones((10, 10), bool), batch=10)
    truth = flat / np.median(flat)
    p = ((est.value - truth) / est.error).ravel()
    assert np.all(np.abs(p) < 5) and 0.7 < np.std(p) < 1.4


@pytest.mark.slow
def test_campaign_maps_have_honest_pulls(tmp_path):
    """A small 70 um campaign end to end: every derived map's pulls against the campaign truth."""
    from mips.calibrate import map_pulls
    from mipssim.campaign.ge import simulate_ge_campaign
    from reprocess.calib.ge import derive_ge_products

    camp = simulate_ge_campaign(70, tmp_path, seed=11, n_dark=90, n_flat=150)
    prod = derive_ge_products(camp.dark, camp.skyflat, band=70, calid="test")
    pulls = map_pulls(prod, camp.truth)
    assert pulls["pmask"]["fatal_derived"] == pulls["pmask"]["fatal_true"]
    for name in ("dark", "illum", "enl_beta", "enl_zero", "read_noise"):
        p = pulls[name]          # ~500 pixels: median +-0.055, spread +-0.04 (1 sigma)
        assert abs(p["median"]) < 0.25, (name, p)
        assert 0.85 < p["spread"] < 1.2, (name, p)


def test_calibrate_refuses_a_campaign_too_small_to_derive_from(tmp_path, capsys):
    from mips.cli import main
    assert main(["calibrate", "--band", "70", "--n-dark", "5", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--n-dark 5" in err[0] and "3 stim flashes" in err[0]
    assert not (tmp_path / "c").exists()
