"""Anneals and the cosmic-ray responsivity build-up between them (mipssim.anneal)."""
import h5py
import numpy as np
import pytest

from mipssim.anneal import anneal_times, initial_cr_excess
from mipssim.config import load_config
from mipssim.observe import simulate


@pytest.mark.parametrize("since_s", [300.0, 1800.0, np.inf])
def test_initial_excess_follows_the_build_up_law(since_s):
    """Mean excess rate x step x tau x (1 - exp(-T / tau)); 4096 pixels set the tolerance."""
    rate, step, tau = 1 / 35, 0.003, 600.0
    x = initial_cr_excess(np.random.default_rng(1), (64, 64), since_anneal_s=since_s, rate_per_s=rate,
                          mean_step=step, tau_s=tau)
    span = min(since_s, 10 * tau)
    mean = rate * step * tau * (1 - np.exp(-span / tau))
    # Campbell's theorem: variance rate x E[size^2] x tau / 2 x (1 - exp(-2 T / tau))
    sd = np.sqrt(rate * 2 * step ** 2 * tau / 2 * (1 - np.exp(-2 * span / tau)))
    assert x.mean() == pytest.approx(mean, abs=5 * sd / 64)
    assert x.std() == pytest.approx(sd, rel=0.1)


def test_anneal_times_follow_the_cadence():
    t = anneal_times(since_anneal_s=3000.0, interval_s=3600.0, duration_s=5000.0)
    np.testing.assert_allclose(t, [600.0, 4200.0])
    assert anneal_times(since_anneal_s=0.0, interval_s=10800.0, duration_s=2700.0).size == 0


def test_an_anneal_inside_the_aor_drops_the_responsivity_by_the_excess(tmp_path):
    cfg = load_config(band=70, n_dce=72, seed=3, anneal_interval_s=3600.0, t_since_anneal_s=3200.0,
                      include_drift=False)
    simulate(cfg, tmp_path)
    with h5py.File(tmp_path / "truth.h5") as t:
        anneals = t["anneals"][()]
        rows = sorted((g.attrs["t_start_s"], np.median(g["responsivity"][()][:, :16]))
                      for g in t["dce"].values())
    assert anneals.tolist() == [400.0]
    times, resp = np.array(rows).T
    before, after = resp[times < 400][-1], resp[times > 400][0]
    expected = 1 / 35 * 0.003 * 600 * (1 - np.exp(-3600 / 600))      # built up for 3600 s
    assert before - after == pytest.approx(expected, rel=0.15)
    assert abs(after - 1) < 0.01                                      # a few new hits only


def test_the_reprocessor_finds_the_step_and_states_its_cost(tmp_path):
    """An anneal between two flashes: the step is found, the DCEs between them carry RESP_STEP and
    an error that covers what the straight line across the step leaves (BCD pulls spread ~1)."""
    from astropy.io import fits

    from calibration.bitmask import BMASK
    from mips.validate import validate
    from reprocess.ge_pipeline import reprocess_ge
    cfg = load_config(band=70, n_dce=90, seed=202, anneal_interval_s=3600.0, t_since_anneal_s=3000.0,
                      zodi_mjysr=300.0)
    simulate(cfg, tmp_path)
    reprocess_ge(tmp_path)
    with h5py.File(tmp_path / "truth.h5") as t:
        anneal = float(t["anneals"][()][0])
        starts = {n: g.attrs["t_start_s"] for n, g in t["dce"].items() if not g.attrs["stim"]}
        flashes = np.array(sorted(g.attrs["t_start_s"] for g in t["dce"].values() if g.attrs["stim"]))
    lo, hi = flashes[flashes < anneal].max(), flashes[flashes > anneal].min()
    flagged = {n: bool((fits.getdata(tmp_path / "bcd" / f"{n}_bmask.fits") & BMASK["RESP_STEP"]).any())
               for n in starts}
    between = [n for n, t0 in starts.items() if lo < t0 < hi]
    assert between and all(flagged[n] for n in between)
    assert sum(flagged.values()) == len(between)
    res = validate(tmp_path)
    assert 0.9 < res["bcd_pull_spread"] < 1.1
