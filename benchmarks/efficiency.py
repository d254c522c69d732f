"""Slope variance against the Cramer-Rao bound, in both noise regimes (prints; run by hand).

1e5 linear 32-read ramps like the 70 um array's (reads every 0.131072 s, gain 7.1 e-/DN, rates
log-uniform 10-3000 DN/s, per-read Poisson charge), with read noise 20 DN (read-noise dominated) and
2 DN (Poisson dominated), as in anchors.md 1.7, and a third case with the flight Ge arrays' excess
noise (white current noise of 6500 DN^2/s, calibration.instrument "Ge noise", on 20 DN reads).  The
bound of each pixel is the variance of GLS on the differences with their tridiagonal covariance at
the true rate: the excess noise, being independent from one difference to the next, adds to the
diagonal like the shot noise, so the bound keeps its form.

    python benchmarks/efficiency.py
"""
import time

import numpy as np

from reprocess.ramps import false_jump_rate, fit_ramps, gls_weights

DT, GAIN, N, NPIX = 0.131072, 7.1, 32, 100_000


def main() -> None:
    rng = np.random.default_rng(7)
    print(f"{'read noise':>10} {'excess':>7} {'var/bound':>10} {'pull median':>12} {'pull std':>9} "
          f"{'false jumps/diff':>17} {'predicted':>10} {'fit s':>7}")
    for rn, excess in ((20.0, 0.0), (2.0, 0.0), (20.0, 6500.0)):
        rates = np.exp(rng.uniform(np.log(10), np.log(3000), NPIX))
        dq = rng.poisson(rates * DT * GAIN, (N, NPIX)) / GAIN + rng.normal(0, np.sqrt(excess * DT), (N, NPIX))
        q = np.cumsum(dq, axis=0)
        reads = (q + rng.normal(0, rn, q.shape))[:, None, :]
        t0 = time.perf_counter()
        fit = fit_ramps(reads, read_time=DT, gain=GAIN, read_noise=rn, excess_noise=excess)
        dt = time.perf_counter() - t0
        pos = np.arange(1, N)[:, None] * np.ones((1, NPIX))
        indep = rates * DT / GAIN + excess * DT
        bound = 1 / (gls_weights(pos, np.full(pos.shape, N - 1), indep, rn ** 2).sum(0) * DT ** 2)
        s, e = fit.slope.ravel(), fit.slope_err.ravel()
        pull = (s - rates) / e
        print(f"{rn:>10.0f} {excess:>7.0f} {np.mean((s - rates) ** 2 / bound):>10.4f} {np.median(pull):>+12.4f} "
              f"{pull.std():>9.4f} {fit.jumps.sum() / (NPIX * (N - 1)):>17.2e} "
              f"{false_jump_rate():>10.2e} {dt:>7.2f}")


if __name__ == "__main__":
    main()
