"""The responsivity-wander model: exact step coefficients, and parameters recovered from synthetic flashes.

Synthetic truth: 1000 pixels, flashes every 60 s, cosmic-ray hits at 1/35 s per pixel each stepping the
responsivity by a Gaussian N(0, 0.3 %) (Gaussian steps make the median-matched variance equal to the
mean square), flash noise 0.1 %.  With ~4e4 interior residuals split in two halves, the median-based
variance estimates have ~2 % relative error; tolerances are 5 sigma.
"""
import numpy as np
import pytest

from reprocess.stim import StimResponse, interpolate_response
from reprocess.stim.wander import Hits, WanderModel, fit_wander, step_coefficients


def test_step_coefficients_exact():
    hits = Hits(t=np.array([1.0, 2.0, 3.0, 9.0]), pix=np.array([0, 0, 1, 0]))
    lo, hi, w = np.zeros(2), np.full(2, 4.0), np.full(2, 0.625)     # target t = 2.5 in (0, 4)
    c = step_coefficients(hits, 2.5, lo, hi, w)
    assert c[0] == pytest.approx(2 * (1 - 0.625) ** 2)               # two hits before t
    assert c[1] == pytest.approx(0.625 ** 2)                          # one hit after t
    assert step_coefficients(Hits.none(), 2.5, lo, hi, w).sum() == 0


def _synthetic(seed, n_pix=1000, n_flash=40, gap_s=60.0, rate=1 / 35, step=0.003, noise=0.001):
    rng = np.random.default_rng(seed)
    t_end = n_flash * gap_s
    n_hit = rng.poisson(rate * t_end * n_pix)
    th, pix = rng.uniform(0, t_end, n_hit), rng.integers(0, n_pix, n_hit)
    size = step * rng.standard_normal(n_hit)
    order = np.argsort(th)
    th, pix, size = th[order], pix[order], size[order]

    def resp(t):
        out = np.ones(n_pix)
        before = th <= t
        np.add.at(out, pix[before], size[before])
        return out

    t_flash = (np.arange(n_flash) + 0.5) * gap_s
    value = np.array([resp(t) for t in t_flash]) * (1 + noise * rng.standard_normal((n_flash, n_pix)))
    stim = StimResponse(t_flash, value[:, None, :], np.full(value.shape, noise)[:, None, :] * value[:, None, :])
    return stim, Hits(th, pix), resp


def test_fit_wander_recovers_step_variance_and_pulls_are_unit():
    stim, hits, resp = _synthetic(3)
    model = fit_wander(stim.t, stim.value, stim.err, hits)
    assert model.step_var == pytest.approx(0.003 ** 2, rel=0.1)
    assert model.kappa < 0.1 * model.step_var / 35      # no smooth wander was simulated
    stim.wander = model
    rng = np.random.default_rng(4)
    pulls = []
    for t in rng.uniform(stim.t[0], stim.t[-1], 200):
        v, e, _ = interpolate_response(stim, t)
        pulls.append(((v - resp(t)[None]) / e).ravel())
    pulls = np.concatenate(pulls)
    spread = 1.4826 * np.median(np.abs(pulls - np.median(pulls)))
    assert abs(np.median(pulls)) < 0.03 and 0.95 < spread < 1.05


def test_without_wander_the_noise_alone_is_propagated():
    stim, _, _ = _synthetic(5, rate=0.0)
    model = fit_wander(stim.t, stim.value, stim.err, Hits.none())
    assert model.kappa * 60 < 0.1 * 0.001 ** 2 and model.step_var == 0
    assert isinstance(model, WanderModel)
