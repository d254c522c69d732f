"""Standard-star observations for the flux conversion (FLUXCONV).

The SSC tied FLUXCONV to stars whose fluxes came from stellar models
[mips-facts 3, 5], and at 160 um, where the near-IR leak adds a ghost several
times a star's photosphere, to asteroids [S07]; here each "standard" is a
3000 K point source (a ~100 K thermal source at 160 um) of known flux
at the target of an ordinary photometry AOR (the usual dithers and stim
cycle, every detector effect on) on a faint uniform background.  The fluxes
are chosen bright enough for a signal-to-noise of hundreds per BCD and below
saturation.  What the simulation cannot have is the SSC's dominant error, the
stellar models themselves (2 % at 24 um, 7 % at 70, 12 % at 160 um absolute):
the stars' fluxes are exact here, so the derived FLUXCONV's error is the
measurement's alone.

The campaign truth (``campaign_truth.h5``) records the true FLUXCONV (same
definition as the product file's) and the stars.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py

from calibration.psf import CALIBRATOR_TEMPERATURE_K

from ..config import load_config
from ..observe import simulate
from . import aor_seed

__all__ = ["StandardStar", "DEFAULT_STARS_JY", "simulate_standard_stars"]

DEFAULT_STARS_JY = {24: (0.025, 0.05, 0.1), 70: (0.5, 1.0, 2.0), 160: (1.0, 2.0, 4.0)}   # UNCONFIRMED
# dithers (array pixels) that keep the star on the array: at 160 um along its 20-pixel length and
# across its blank middle row (the photometry default steps off the 3-row array)
DITHERS_PIX = {24: None, 70: None, 160: [[0.0, 0.0], [3.0, 0.5], [-3.0, -0.5], [6.0, -0.5], [-6.0, 0.5]]}
_AORKEY0 = 91000000


@dataclass(frozen=True)
class StandardStar:
    """One standard-star AOR: its folder, the star's position (deg) and flux (Jy at the band)."""

    folder: Path
    ra_deg: float
    dec_deg: float
    flux_jy: float


def simulate_standard_stars(band: int, out: str | Path, *, seed: int, fluxes_jy=None,
                            n_dce: int = 36, true_fluxconv: float | None = None,
                            overwrite: bool = False) -> list[StandardStar]:
    """Simulate one photometry AOR per star into ``out/star<k>``.

    Parameters
    ----------
    band : {24, 70, 160}
    out : path
        Folder of the star AORs (created).
    seed : int
        Campaign seed; star ``k``'s AOR uses :func:`mipssim.campaign.aor_seed` ``(seed, "star", k)``.
    fluxes_jy : sequence of float, optional
        The stars' fluxes (default :data:`DEFAULT_STARS_JY`).
    n_dce : int
        DCEs per AOR (stim DCEs included).
    true_fluxconv : float, optional
        Recorded in ``out/campaign_truth.h5`` (``/calibration`` attribute
        ``FLUXCONV``) with the stars, when given.

    Returns
    -------
    list of StandardStar
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stars = []
    for k, flux in enumerate(fluxes_jy or DEFAULT_STARS_JY[band]):
        cfg = load_config(band=band, seed=aor_seed(seed, "star", k), n_dce=n_dce, aorkey=_AORKEY0 + 100 * band + k,
                          n_sources=1, flux_min_jy=flux, flux_max_jy=flux,
                          source_temperature_k=CALIBRATOR_TEMPERATURE_K[band],
                          zodi_mjysr=40.0 if band == 24 else 5.0, cirrus_mjysr=1.0,
                          cirrus_contrast=0.0, blob_peak_mjysr=0.0,
                          dither_pix=DITHERS_PIX[band])
        folder = simulate(cfg, out / f"star{k}", overwrite=overwrite)
        stars.append(StandardStar(folder=folder, ra_deg=cfg.ra_deg, dec_deg=cfg.dec_deg,
                                  flux_jy=float(flux)))
    if true_fluxconv is not None:
        with h5py.File(out / "campaign_truth.h5", "w") as f:
            g = f.create_group("calibration")
            g.attrs.update({"BAND": band, "FLUXCONV": true_fluxconv,
                            "STARS_JY": [s.flux_jy for s in stars]})
    return stars
