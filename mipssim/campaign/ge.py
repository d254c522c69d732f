"""The Ge (70, 160 um) calibration campaign: darks with stim flashes, and a dithered sky flat.

The SSC derived its Ge products from dedicated observations [mips-facts 4]:
darks with the scan mirror at its dark position (no sky reaches the array),
stim flashes on that dark (the stim's own illumination pattern and the ramps
that climb to saturation, which measure the electronic nonlinearity), and sky
flats from low-cirrus fields observed with many dither positions, sources
rejected.  Two AORs stand in for these here, both made by the ordinary
simulator with every detector effect on (responsivity drift, cosmic rays and
their responsivity steps, the anomalous first flash, pointing jitter):

``dark``
    ``include_background`` and ``include_sources`` off (the mirror's dark
    position), the usual stim cycle.
``skyflat``
    a uniform field (zodiacal light plus a flat cirrus floor) stepped over a
    dither grid.  Real sky-flat fields had faint sources (rejected by
    clipping) and cirrus structure; a source near the target stays on the
    same pixels for most of a small dither pattern and cirrus gradients do not
    average out over it, so both would leave their imprint at the 1 % level:
    the simulated field has neither, and the flat's errors are its noise.

The campaign's ``campaign_truth.h5`` records what a derivation should recover:
the true maps under ``/calibration/<EXTNAME>`` and the scalars (``FLUXCONV``,
``GAIN``, ``SATLEVEL``) as ``/calibration`` attributes, with the same
definitions as the product file (:mod:`calibration.products`).  It never holds
derived products.

Campaign sizes are parameters with defaults sized so that the map errors stay
well below the BCDs' per-pixel noise; the real campaigns' sizes are
UNCONFIRMED.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from calibration.products import EXTNAMES, CalProducts

from ..config import load_config
from ..detector import default_detector
from ..observe import simulate
from . import aor_seed

__all__ = ["GeCampaign", "true_products", "campaign_configs", "simulate_ge_campaign"]

_AORKEY = {"dark": 90000001, "skyflat": 90000002}


@dataclass(frozen=True)
class GeCampaign:
    """Where a simulated Ge campaign lives."""

    band: int
    root: Path

    @property
    def dark(self) -> Path:
        """Observation folder of the dark AOR (with stim flashes on the dark)."""
        return self.root / "dark"

    @property
    def skyflat(self) -> Path:
        """Observation folder of the dithered sky-flat AOR."""
        return self.root / "skyflat"

    @property
    def truth(self) -> Path:
        """The campaign's truth file (true maps and scalars under ``/calibration``)."""
        return self.root / "campaign_truth.h5"


def true_products(band: int) -> CalProducts:
    """The product set that exactly describes the simulator's ``band`` detector (the truth).

    ``ILLUM`` is the sky flat over the stim pattern, normalised to median 1 over
    good pixels; ``FLUXCONV`` converts the resulting MIPS units to MJy/sr.
    """
    det = default_detector(band)
    spec = det.spec
    ic = det.flat / det.stim_pattern
    norm = float(np.median(ic[det.good]))
    return CalProducts(
        band=band, calid=f"MIPS{band}-SIM-TRUTH",
        fluxconv=spec.stim_dn_s / (spec.dn_s_per_mjysr * norm),
        gain=spec.gain_e_per_dn, saturation_dn=spec.saturation_dn,
        dark=det.dark_mips, illum=ic / norm, enl_beta=det.enl_beta, enl_zero=det.enl_zero,
        pmask=det.pmask, read_noise=det.read_noise, excess_noise=det.excess_noise)


# uniform emission of the sky-flat field, MJy/sr, beyond 10 MJy/sr of zodi: at flight noise (25 DN/s
# per 70 um DCE, 14 DN/s per MJy/sr) a 12 MJy/sr field leaves ILLUM 1.7 % uncertain per pixel after 200
# DCEs, so the 70 um flat looks at a bright, smooth field (bright cirrus, as the team used for the SED
# illumination corrections [HB 4.1.4 /43]); at 160 um a bright field would saturate the stim DCEs
_FLAT_CIRRUS = {70: 40.0, 160: 2.0}


def _flat_dithers(n: int) -> list[list[float]]:
    """A ``n`` x ``n`` grid of dithers, 2.3 pixels apart (array pixels), centred."""
    steps = 2.3 * (np.arange(n) - (n - 1) / 2)
    return [[float(dx), float(dy)] for dy in steps for dx in steps]


def campaign_configs(band: int, *, seed: int, n_dark: int = 120, n_flat: int = 240,
                     config_file=None) -> dict:
    """SimConfigs of the campaign's AORs, ``{"dark": cfg, "skyflat": cfg}``.

    ``config_file`` (TOML) sets the detector and effect parameters of both (as for
    ``mips simulate``); the campaign then fixes what makes each AOR what it is.
    """
    dark = load_config(config_file, band=band, seed=aor_seed(seed, "dark"), n_dce=n_dark,
                       aorkey=_AORKEY["dark"],
                       include_background=False, include_sources=False)
    flat = load_config(config_file, band=band, seed=aor_seed(seed, "skyflat"), n_dce=n_flat,
                       aorkey=_AORKEY["skyflat"], zodi_mjysr=10.0, cirrus_mjysr=_FLAT_CIRRUS[band],
                       cirrus_contrast=0.0, blob_peak_mjysr=0.0, n_sources=0,
                       dither_pix=_flat_dithers(5))
    return {"dark": dark, "skyflat": flat}


def simulate_ge_campaign(band: int, out: str | Path, *, seed: int, n_dark: int = 120,
                         n_flat: int = 240, config_file=None, overwrite: bool = False,
                         progress=None) -> GeCampaign:
    """Simulate the campaign of ``band`` into ``out`` (one folder per AOR + the truth file).

    Parameters
    ----------
    band : {70, 160}
    out : path
        Campaign folder (created).
    seed : int
        Campaign seed; each AOR's own seed is :func:`mipssim.campaign.aor_seed` of it.
    n_dark, n_flat : int
        DCEs of the dark and sky-flat AORs (stim DCEs included).
    progress : callable, optional
        ``progress(done, total)`` over all DCEs of the campaign.

    Returns
    -------
    GeCampaign
    """
    if band not in (70, 160):
        raise ValueError(f"band {band}: the Ge campaign is for 70 or 160 um")
    camp = GeCampaign(band=band, root=Path(out))
    camp.root.mkdir(parents=True, exist_ok=True)
    cfgs = campaign_configs(band, seed=seed, n_dark=n_dark, n_flat=n_flat, config_file=config_file)
    total = sum(c.n_dce for c in cfgs.values())
    done = 0
    for name, cfg in cfgs.items():
        step = None if progress is None else (lambda d, t, base=done: progress(base + d, total))
        simulate(cfg, camp.root / name, overwrite=overwrite, progress=step)
        done += cfg.n_dce
    write_campaign_truth(camp.truth, true_products(band), seed=seed)
    return camp


def write_campaign_truth(path: Path, truth: CalProducts, *, seed: int) -> None:
    """The true maps under ``/calibration/<EXTNAME>``, scalars as ``/calibration`` attributes."""
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        g = f.create_group("calibration")
        for attr, ext in EXTNAMES.items():
            g.create_dataset(ext, data=np.asarray(getattr(truth, attr)))
        g.attrs.update({"BAND": truth.band, "FLUXCONV": truth.fluxconv, "GAIN": truth.gain,
                        "SATLEVEL": truth.saturation_dn, "SEED": seed})
    tmp.replace(path)
