"""Posterior photometry (reprocess.photometry.posterior): exact answers, bad input, determinism and the
coverage of its credible intervals on synthetic images rendered from the same PRF."""
import emcee
import numpy as np
import pytest
from astropy import units as u

from calibration.psf import load_prf
from reprocess.photometry.posterior import flux_per_pixel_unit, posterior_photometry

BAND, PIX = 24, 2.55           # a 24 um BCD's pixel
SIGMA = 0.2                    # MJy/sr per pixel, ~ a 24 um BCD's
SHAPE = (27, 27)
PRF = load_prf(BAND, 3000.0, PIX)
C_UJY = flux_per_pixel_unit(PIX)
YY, XX = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
# 1-sigma flux of a PRF fit with the background known, uJy: S/N = flux / SIGMA_F
SIGMA_F = SIGMA * C_UJY / np.sqrt(np.sum(PRF(YY - 13.0, XX - 13.0) ** 2))
FWHM_PIX = 2.46                # the 24 um PRF's FWHM at 2.55" pixels
QUICK = {"nsteps": 1200, "burn": 300}


def render(sources, bkg=1.0):
    """Noise-free image (MJy/sr) of point sources [(flux uJy, x, y), ...] on a flat background."""
    img = np.full(SHAPE, bkg)
    for f, x, y in sources:
        img += f / C_UJY * PRF(YY - y, XX - x)
    return img


def run(img, starts, *, seed=1, error=None, **kw):
    err = np.full(SHAPE, SIGMA) if error is None else error
    return posterior_photometry(img, err, band=BAND, positions=starts, pixel_arcsec=PIX, seed=seed, **kw)


def test_flux_per_pixel_unit_matches_the_issue():
    # 141.08, 376.067 and 1504.27 uJy per MJy/sr for 2.45", 4.0" and 8.0" pixels
    for pix, want in ((2.45, 141.08), (4.0, 376.067), (8.0, 1504.27)):
        assert flux_per_pixel_unit(pix) == pytest.approx(want, abs=0.02)
    assert flux_per_pixel_unit(2.45, "kJy / sr") == pytest.approx(141.08e-3, abs=2e-5)


@pytest.mark.parametrize("sources,starts", [
    ([(20 * SIGMA_F, 13.3, 12.8)], [(13.0, 13.1)]),
    ([(25 * SIGMA_F, 12.0, 13.0), (15 * SIGMA_F, 12.0 + FWHM_PIX, 13.2)], [(12.2, 12.9), (14.3, 13.0)]),
])
def test_noise_free_image_gives_the_truth(sources, starts):
    """Noise-free data: the posterior is centred on the truth, so its median is there to within
    the chain's Monte-Carlo error (1.25 sigma / sqrt(effective samples))."""
    tab = run(render(sources, bkg=1.5), starts)
    n_eff = tab["n_eff"]
    for row, (f, x, y) in zip(tab, sources):
        for col, truth in (("flux", f), ("x", x), ("y", y)):
            mc = 1.2533 * row[f"{col}_err"].value / np.sqrt(n_eff[0])
            assert abs(row[col].value - truth) < 4 * mc, (col, row[col], truth, mc)
            assert row[f"{col}_q2p5"] < row[f"{col}_q16"] < row[col] < row[f"{col}_q84"] < row[f"{col}_q97p5"]
        mc_b = 1.2533 * row["bkg_err"].value / np.sqrt(n_eff[0])
        assert abs(row["bkg"].value - 1.5) < 4 * mc_b
    assert tab["flux"].unit == u.uJy and tab["x"].unit == u.pix and tab["bkg"].unit == u.MJy / u.sr
    assert not tab["short_chain"].any()
    assert np.all((tab["acceptance"] > 0.1) & (tab["acceptance"] < 0.7))


def test_plane_background_recovered():
    img = render([(20 * SIGMA_F, 13.2, 13.1)], bkg=1.0) + 0.05 * (XX - 13.0) - 0.03 * (YY - 13.0)
    tab = run(img, [(13.0, 13.0)], background="plane")
    n_eff = tab["n_eff"][0]
    for col, truth in (("flux", 20 * SIGMA_F), ("bkg_dx", 0.05), ("bkg_dy", -0.03)):
        assert abs(tab[col][0].value - truth) < 4 * 1.2533 * tab[f"{col}_err"][0].value / np.sqrt(n_eff)


def test_same_seed_identical_numbers_and_chains_file(tmp_path):
    rng = np.random.default_rng(3)
    img = render([(6 * SIGMA_F, 13.2, 12.9)]) + rng.normal(0, SIGMA, SHAPE)
    a = run(img, [(13.0, 13.0)], seed=7, **QUICK)
    b = run(img, [(13.0, 13.0)], seed=7, chains=tmp_path / "chains.h5", **QUICK)
    c = run(img, [(13.0, 13.0)], seed=8, **QUICK)
    for col in a.colnames:
        assert np.array_equal(np.asarray(a[col]), np.asarray(b[col])), col
    assert a["flux"][0] != c["flux"][0]
    back = emcee.backends.HDFBackend(str(tmp_path / "chains.h5"), name="group_1", read_only=True)
    assert back.get_chain().shape == (1200, 32, 4)
    assert list(tmp_path.iterdir()) == [tmp_path / "chains.h5"]      # no partial file left
    with pytest.raises(FileExistsError, match="chains.h5"):
        run(img, [(13.0, 13.0)], seed=7, chains=tmp_path / "chains.h5", **QUICK)


def test_quantity_input_same_as_array():
    img = render([(8 * SIGMA_F, 13.0, 13.0)]) + np.random.default_rng(4).normal(0, SIGMA, SHAPE)
    a = run(img, [(13.0, 13.0)], **QUICK)
    b = posterior_photometry(img * u.MJy / u.sr, np.full(SHAPE, SIGMA) * u.MJy / u.sr, band=BAND,
                             positions=[(13.0, 13.0)], pixel_arcsec=PIX, seed=1, **QUICK)
    assert np.array_equal(np.asarray(a["flux"]), np.asarray(b["flux"]))


def test_far_sources_fitted_separately_close_ones_together():
    img = render([(10 * SIGMA_F, 4.0, 4.0), (10 * SIGMA_F, 22.0, 22.0), (10 * SIGMA_F, 24.0, 22.0)])
    tab = run(img, [(4.0, 4.0), (22.0, 22.0), (24.0, 22.0)], nsteps=300, burn=100)
    assert tab["group_id"][1] == tab["group_id"][2] != tab["group_id"][0]
    assert list(tab["id"]) == [0, 1, 2]


def test_positivity_prior_excludes_zero_flux():
    """A source of zero flux: the flat prior's 95 % interval holds 0; the positive one's cannot."""
    img = render([]) + np.random.default_rng(5).normal(0, SIGMA, SHAPE)
    flat = run(img, [(13.0, 13.0)], **QUICK)
    pos = run(img, [(13.0, 13.0)], positive_flux=True, **QUICK)
    assert flat["flux_q2p5"][0].value < 0 < flat["flux_q97p5"][0].value
    assert pos["flux_q2p5"][0].value > 0 and pos["flux"][0] > flat["flux"][0]


def test_short_chain_flagged():
    img = render([(6 * SIGMA_F, 13.0, 13.0)]) + np.random.default_rng(6).normal(0, SIGMA, SHAPE)
    tab = run(img, [(13.0, 13.0)], nsteps=150, burn=50)
    assert tab["short_chain"][0] and tab["n_tau"][0] < 50


@pytest.mark.parametrize("change,match", [
    ({"starts": [(40.0, 13.0)]}, "off the image"),
    ({"starts": [(13.0, -3.0)]}, "off the image"),
    ({"error": np.where((YY == 12) & (XX == 14), 0.0, SIGMA)}, "error map: 1 zero, negative or NaN"),
    ({"error": np.where(YY == 13, np.nan, SIGMA)}, "error map: 11 zero, negative or NaN"),
    ({"error": np.full((5, 5), SIGMA)}, "shape"),
    ({"mask": np.ones(SHAPE, bool)}, "usable pixels"),
    ({"background": "quadratic"}, "background"),
    ({"starts": [(13.0, np.nan)]}, "positions"),
])
def test_bad_input_clear_error(change, match):
    img = render([(5 * SIGMA_F, 13.0, 13.0)])
    starts = change.pop("starts", [(13.0, 13.0)])
    with pytest.raises(ValueError, match=match):
        run(img, starts, nsteps=50, burn=10, **change)


def test_bad_error_at_masked_pixels_is_fine():
    img = render([(5 * SIGMA_F, 13.0, 13.0)])
    bad = (YY == 12) & (XX == 14)
    tab = run(img, [(13.0, 13.0)], error=np.where(bad, np.nan, SIGMA), mask=bad, nsteps=100, burn=20)
    assert tab["npix"][0] == 11 * 11 - 1


def _coverage_trial(case: str, seed: int) -> list[tuple[str, float, np.ndarray]]:
    """One synthetic image; (parameter, truth, [q2.5, q16, q84, q97.5]) per source and parameter.

    The start positions are drawn first, then each truth uniformly in the position box about its
    start (the truths are drawn from the prior given the starts, which is what makes Bayesian
    intervals cover at their nominal rate); fluxes at S/N 3-10 (single) or 5-15 each (a pair 1 FWHM
    apart, whose box is +-0.5 pixel so that their true separation stays ~1 FWHM).
    """
    rng = np.random.default_rng([seed, 0 if case == "single" else 1])
    centre = 13.0 + rng.uniform(-0.5, 0.5, 2)
    if case == "single":
        starts, box, snr = [centre], 1.0, [rng.uniform(3, 10)]
    else:
        phi = rng.uniform(0, np.pi)
        d = 0.5 * FWHM_PIX * np.array([np.cos(phi), np.sin(phi)])
        starts, box, snr = [centre - d, centre + d], 0.5, rng.uniform(5, 15, 2)
    truths = [(f * SIGMA_F, *(s + rng.uniform(-box, box, 2))) for f, s in zip(snr, starts)]
    img = render(truths) + rng.normal(0, SIGMA, SHAPE)
    tab = run(img, [tuple(s) for s in starts], seed=seed, position_box_pix=box, **QUICK)
    out = []
    for row, truth in zip(tab, truths):
        for col, value in zip(("flux", "x", "y"), truth):
            out.append((col, value, np.array([row[f"{col}_{q}"].value for q in ("q2p5", "q16", "q84", "q97p5")])))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("case", ["single", "pair"])
def test_intervals_cover_at_nominal_rate(case):
    """68 and 95 % intervals of flux and position contain the truth at their nominal rates within
    3 binomial standard errors (benchmarks/phot_posterior_coverage.py runs >= 50 seeds)."""
    n_seeds = 24 if case == "single" else 12
    trials = [t for s in range(n_seeds) for t in _coverage_trial(case, s)]
    for col in ("flux", "x", "y"):
        rows = [(v, q) for c, v, q in trials if c == col]
        n = len(rows)
        for level, (lo, hi) in ((0.68, (1, 2)), (0.95, (0, 3))):
            hit = np.mean([q[lo] <= v <= q[hi] for v, q in rows])
            assert abs(hit - level) <= 3 * np.sqrt(level * (1 - level) / n), (case, col, level, hit, n)
