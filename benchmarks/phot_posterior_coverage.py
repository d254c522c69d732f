"""Coverage of the emcee photometry intervals (reprocess.photometry.posterior) over many seeds.

    python benchmarks/phot_posterior_coverage.py --seeds 50                 # synthetic, 24 um BCD pixels
    python benchmarks/phot_posterior_coverage.py --seeds 200 --cases single,pair
    python benchmarks/phot_posterior_coverage.py --seeds 0 --simulated      # simulator + reprocessor only

Synthetic cases (``--cases``), each seed one image rendered from the same PRF the fit uses, with
Gaussian noise of a 24 um BCD's level (0.2 MJy/sr per 2.55" pixel) on a flat background:

- ``single``: a faint isolated source at S/N 3-10 (uniform);
- ``pair``: two sources 1 FWHM apart in a random direction, S/N 5-15 each, position box +-0.5 pixel;
- ``zero``: a source of zero flux, fitted with the flat flux prior and with ``positive_flux=True``
  (shows what the positivity prior does to a faint source's intervals).

The start positions are drawn first (random sub-pixel phase; the pair's 1 FWHM apart), then each
truth uniformly within the position box about its start (+-1 pixel, the pair's +-0.5): the truths
are drawn from the position prior given the starts, the condition under which Bayesian credible
intervals cover at their nominal rate (fluxes and background, linear under flat priors, need no such
condition).  For flux, x and y: the fraction of sources whose 68 % and 95 %
intervals contain the truth, with the binomial standard error sqrt(p (1 - p) / n); the pulls
(median - truth) / (half the 68 % interval); the coverage of the linear fit's flux +- error at the
start positions (what a PRF fit that trusts those positions would quote); acceptance, n_tau (kept
steps / autocorrelation time) and seconds per fit.

``--simulated``: a 24 um photometry AOR with faint sources (S/N ~ 3-11 per BCD, no extended blob)
made by the simulator and reprocessed to BCDs.  On every BCD the sources are grouped as
posterior_photometry groups them (cutouts that overlap); each group of at most 3 sources away from the
array's edges is fitted with a plane background (larger groups, chains of neighbours in this crowded
2' field, are skipped: their dimension makes them slow); the truth is truth.h5's fluxes and positions
through each BCD's WCS.  Reported for all fits and for those whose chi-square p-value is >= 1e-3
(24 um BCDs keep their cosmic rays: the on-board slopes cannot flag them, the mosaic's outlier
rejection does); ``--mask-true-crs`` masks the pixels truth.h5 says were hit (a diagnostic only).
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from photutils.psf import SourceGrouper

from calibration.psf import load_prf
from reprocess.photometry.posterior import flux_per_pixel_unit, posterior_photometry

BAND, PIX, SIGMA = 24, 2.55, 0.2
SHAPE = (27, 27)
QS = ("q2p5", "q16", "q84", "q97p5")
PAIR_BOX_PIX = 0.5             # the pair's position box: their true separation stays 1 FWHM +- ~0.4 pix
RADIUS = 5                    # cutout half-size, pixels: ~2 FWHM of the 24 um PRF at 2.55"


class Synthetic:
    """Renders point sources with the 24 um PRF at 2.55" pixels on a flat background."""

    def __init__(self):
        self.prf = load_prf(BAND, 3000.0, PIX)
        self.c = flux_per_pixel_unit(PIX)
        self.yy, self.xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
        centre = self.prf(self.yy - 13.0, self.xx - 13.0)
        self.sigma_f = SIGMA * self.c / np.sqrt(np.sum(centre ** 2))
        dx = np.linspace(-5, 5, 4001)
        prof = self.prf(np.zeros_like(dx), dx)
        above = dx[prof >= prof.max() / 2]
        self.fwhm = above.max() - above.min()

    def image(self, sources, rng):
        img = np.full(SHAPE, 1.0) + rng.normal(0, SIGMA, SHAPE)
        for f, x, y in sources:
            img += f / self.c * self.prf(self.yy - y, self.xx - x)
        return img

    def trial(self, case, rng):
        """Start positions, the position box and the truths [(flux, x, y), ...] of one image.

        The starts are drawn first (a random sub-pixel phase), then each truth uniformly in the
        position box about its start: the truths are drawn from the prior given the starts.
        """
        centre = 13.0 + rng.uniform(-0.5, 0.5, 2)
        if case == "pair":
            phi = rng.uniform(0, np.pi)
            d = 0.5 * self.fwhm * np.array([np.cos(phi), np.sin(phi)])
            starts, box, snr = [centre - d, centre + d], PAIR_BOX_PIX, rng.uniform(5, 15, 2)
        else:
            starts, box = [centre], 1.0
            snr = [0.0] if case == "zero" else [rng.uniform(3, 10)]
        truths = [(f * self.sigma_f, *(s + rng.uniform(-box, box, 2))) for f, s in zip(snr, starts)]
        return [tuple(s) for s in starts], box, truths


def _records(tab, truths):
    """(parameter, truth, median, [q2.5, q16, q84, q97.5], err, linear flux, linear err, p-value) per
    source and parameter."""
    out = []
    for row, truth in zip(tab, truths):
        for col, value in zip(("flux", "x", "y"), truth):
            q = np.array([row[f"{col}_{s}"].value for s in QS])
            out.append((col, value, row[col].value, q, row[f"{col}_err"].value,
                        row["flux_init"].value, row["flux_init_err"].value, row["p_value"]))
    return out


def _report(label, records, diag, seconds, min_p=0.0):
    print(f"\n== {label}: {len(diag)} fits, {seconds / max(len(diag), 1):.2f} s per fit; acceptance median "
          f"{np.median([d[0] for d in diag]):.2f}, n_tau median {np.median([d[1] for d in diag]):.0f} "
          f"(min {np.min([d[1] for d in diag]):.0f}), short chains {np.mean([d[2] for d in diag]):.3f}")
    print(f"   {'param':6s} {'n':>5s} {'68% cover':>10s} {'s.e.':>6s} {'95% cover':>10s} {'s.e.':>6s} "
          f"{'pull mean':>9s} {'pull std':>8s} {'robust':>6s}  linear fit at start: 68% / 95%")
    for col in ("flux", "x", "y"):
        rows = [r for r in records if r[0] == col and r[7] >= min_p]
        if not rows:
            continue
        n = len(rows)
        truth = np.array([r[1] for r in rows])
        q = np.array([r[3] for r in rows])
        c68 = np.mean((q[:, 1] <= truth) & (truth <= q[:, 2]))
        c95 = np.mean((q[:, 0] <= truth) & (truth <= q[:, 3]))
        pull = (np.array([r[2] for r in rows]) - truth) / np.array([r[4] for r in rows])
        line = (f"   {col:6s} {n:5d} {c68:10.3f} {np.sqrt(.68 * .32 / n):6.3f} {c95:10.3f} "
                f"{np.sqrt(.95 * .05 / n):6.3f} {np.mean(pull):+9.3f} {np.std(pull):8.3f} "
                f"{1.4826 * np.median(np.abs(pull - np.median(pull))):6.3f}")
        if col == "flux":
            lin = np.array([r[5] for r in rows])
            lerr = np.array([r[6] for r in rows])
            line += (f"  {np.mean(np.abs(lin - truth) <= lerr):.3f} / "
                     f"{np.mean(np.abs(lin - truth) <= 1.96 * lerr):.3f}")
        print(line)


def run_synthetic(case: str, n_seeds: int, positive_flux: bool = False) -> None:
    syn = Synthetic()
    records, diag = [], []
    t0 = time.perf_counter()
    for seed in range(n_seeds):
        rng = np.random.default_rng([seed, {"single": 0, "pair": 1, "zero": 2}[case]])
        starts, box, truths = syn.trial(case, rng)
        img = syn.image(truths, rng)
        tab = posterior_photometry(img, np.full(SHAPE, SIGMA), band=BAND, positions=starts, pixel_arcsec=PIX,
                                   seed=seed, positive_flux=positive_flux, position_box_pix=box)
        records += _records(tab, truths)
        diag.append((tab["acceptance"][0], tab["n_tau"][0], bool(tab["short_chain"][0])))
    label = (f"{case}: 24 um, 2.55\" pixels, sigma_F {syn.sigma_f:.0f} uJy, FWHM {syn.fwhm:.2f} pix, "
             f"{n_seeds} seeds" + (", positive_flux" if positive_flux else ""))
    _report(label, records, diag, time.perf_counter() - t0)


def _simulate(workdir: Path, seed: int, n_sources: int, n_dce: int) -> Path:
    from mipssim.config import load_config
    from mipssim.observe import simulate
    from reprocess.pipeline import reprocess
    toml = workdir / "faint24.toml"
    toml.write_text(f"band = 24\nseed = {seed}\nn_dce = {n_dce}\nn_sources = {n_sources}\n"
                    "flux_min_jy = 0.0006\nflux_max_jy = 0.002\nsource_temperature_k = 3000.0\n"
                    "blob_peak_mjysr = 0.0\n")
    obs = workdir / "obs24"
    simulate(load_config(toml), obs)
    reprocess(obs)
    return obs


def run_simulated(seed: int, n_sources: int, n_dce: int, workdir: str | None, max_group: int = 3,
                  mask_true_crs: bool = False) -> None:
    from reprocess.bcd import load_bcd
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        obs = work / "obs24" if (work / "obs24" / "bcd").exists() else _simulate(work, seed, n_sources, n_dce)
        print(f"simulated and reprocessed in {time.perf_counter() - t0:.0f} s: {obs}")
        with h5py.File(obs / "truth.h5", "r") as truth:
            src = truth["sources"][()]
            hits = {name: truth["dce"][name]["cr_events"][()] for name in truth["dce"]}
        flux_ujy = src["flux_jy_24"] * 1e6
        rng = np.random.default_rng(seed)
        records, diag = [], []
        t0 = time.perf_counter()
        bcds = sorted((obs / "bcd").glob("*_bcd.fits"))
        for b, path in enumerate(bcds):
            bcd = load_bcd(path)
            ny, nx = bcd.data.shape
            mask = bcd.mask.copy()
            if mask_true_crs:           # diagnostic: the pixels truth.h5 says a cosmic ray hit
                ev = hits[path.name[:-len("_bcd.fits")]]
                mask[ev["y"], ev["x"]] = True
            x, y = bcd.wcs.all_world2pix(src["ra"], src["dec"], 0)
            on = np.flatnonzero((x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5))
            inner = (x > RADIUS + 2) & (x < nx - 3 - RADIUS) & (y > RADIUS + 2) & (y < ny - 3 - RADIUS)
            groups = SourceGrouper(min_separation=2 * RADIUS + 1)(x[on], y[on])
            for gid in np.unique(groups):
                ids = on[groups == gid]
                if ids.size > max_group or not inner[ids].all():
                    continue
                starts = np.column_stack([x[ids] - rng.uniform(-1, 1, ids.size),    # truth uniform in the
                                          y[ids] - rng.uniform(-1, 1, ids.size)])   # box about the start
                tab = posterior_photometry(np.asarray(bcd.data, float), np.asarray(bcd.uncertainty.array, float),
                                           band=24, positions=starts, pixel_arcsec=PIX, mask=mask,
                                           background="plane", cutout_radius_pix=RADIUS,
                                           seed=1000 * b + int(gid))
                records += _records(tab, [(flux_ujy[i], x[i], y[i]) for i in ids])
                diag.append((tab["acceptance"][0], tab["n_tau"][0], bool(tab["short_chain"][0])))
        sig = np.median([r[4] for r in records if r[0] == "flux"])
        label = (f"simulated 24 um AOR (seed {seed}): {len(bcds)} BCDs x {n_sources} sources "
                 f"({flux_ujy.min():.0f}-{flux_ujy.max():.0f} uJy, median flux error {sig:.0f} uJy), "
                 f"plane background, groups of <= {max_group} sources"
                 + (", cosmic-ray pixels from truth.h5 masked" if mask_true_crs else ""))
        seconds = time.perf_counter() - t0
        _report(label + ": all fits", records, diag, seconds)
        good = np.mean([r[7] >= 1e-3 for r in records])
        _report(label + f": fits with p_value >= 1e-3 ({good:.3f} of them)", records, diag, seconds, min_p=1e-3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50, help="synthetic images per case (seeds 0..N-1)")
    ap.add_argument("--cases", default="single,pair,zero", help="comma-separated synthetic cases")
    ap.add_argument("--simulated", action="store_true", help="also the simulator + reprocessor check")
    ap.add_argument("--sim-seed", type=int, default=1)
    ap.add_argument("--sim-sources", type=int, default=40)
    ap.add_argument("--sim-dce", type=int, default=9, help="DCEs of the simulated AOR (BCDs = DCEs - 1)")
    ap.add_argument("--workdir", help="keep (or reuse) the simulated observation here")
    ap.add_argument("--max-group", type=int, default=3, help="largest group fitted in the simulated check")
    ap.add_argument("--mask-true-crs", action="store_true",
                    help="simulated check: mask the pixels truth.h5 says cosmic rays hit (a diagnostic)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.seeds:
        for case in args.cases.split(","):
            run_synthetic(case, args.seeds)
            if case == "zero":
                run_synthetic(case, args.seeds, positive_flux=True)
    if args.simulated:
        run_simulated(args.sim_seed, args.sim_sources, args.sim_dce, args.workdir, args.max_group,
                      args.mask_true_crs)


if __name__ == "__main__":
    main()
