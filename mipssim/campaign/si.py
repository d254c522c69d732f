"""The 24 um (Si:As) calibration campaign: darks, per-mirror-position sky flats, a droop field.

The SSC derived its 24 um products from dedicated observations [mips-facts 3]:
darks with the scan mirror at its dark position, repeated often enough to
catch the readout-4 jailbar's dependence on DCENUM; flats per scan-mirror
position (a spot-free gain flat times the pick-off-mirror spot map at that
position) from dithered low-background zodi fields, sources rejected; and the
electronics' artefacts (droop, row droop, the read-2 deficit, the first-frame
deficit) measured where they have a lever arm.  The AORs here are made by the
ordinary simulator (every detector effect on, pointing jitter included):

``dark10_<k>``
    short 10 MIPS-s AORs with no sky (``include_background`` and
    ``include_sources`` off: the mirror's dark position).  Each AOR gives one
    DCE of every DCENUM, so the per-DCENUM darks need many AORs.
``dark3_<k>``
    3 MIPS-s dark AORs.  The read-2 deficit biases a slope by ``-a(y) w_1``,
    and ``w_1`` (the second read's least-squares weight) is six times larger
    for 6 reads than for 20: the difference of 3 and 10 MIPS-s darks of the
    same DCENUM is the read-2 law alone (dark and droop cancel).
``flat_<i>``
    one AOR per scan-mirror position of the default photometry dither pattern
    (only the telescope dithers, along the array's x axis, so the mirror and
    with it the spots stay put), on a zodi field with a few faint sources
    (masked by the derivation) and no cirrus structure.  Its first three DCEs
    (DCENUM 0-2, same pointing) against the later ones give the first-frame
    factors.
``droop``
    a compact bright extended source (below the latent threshold, never
    saturating) alternately on and off the array (a 150-pixel telescope
    dither along x): pixels that see blank sky in both DCEs change only by the
    droop offsets, ``c`` times the array's mean signal and ``c_row`` times the
    row's.

Real fields have cirrus structure and brighter sources; a structure that
moves with the dithers would imprint on the flat at the 0.1 % level the flat's
noise reaches here, so the simulated flat fields have none (as the Ge sky
flat).  Campaign sizes are parameters; the real campaigns' sizes are
UNCONFIRMED.

``campaign_truth.h5`` records what a derivation should recover, with the
definitions of :mod:`calibration.products`: the true maps under
``/calibration/<EXTNAME>`` (``DARK``, ``FLATS``, ``CSMPOS``, ``READ2``,
``READNOIS``, ``PMASK``, ``FIRSTFRM``) and the scalars as ``/calibration``
attributes (``DROOP``, ``RDROOP``, ``READ2`` = read-2 amplitude in DN,
``READ2SCL`` = its e-folding height in rows, ``FIRSTFRM``, ``FLUXCONV``,
``GAIN``, ``SATLEVEL``).  It never holds derived products.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..config import SimConfig, load_config
from ..observe import simulate
from ..si_as import default_si_detector, read2_deficit
from . import aor_seed

__all__ = ["SiCampaign", "SiCampaignPlan", "campaign_configs", "simulate_si_campaign",
           "true_si_calibration", "flat_positions_arcsec"]

_AORKEY_BASE = 91000000
DARK_POSITION_NOTE = "no sky: include_background and include_sources off (scan mirror at the dark position)"


@dataclass(frozen=True)
class SiCampaignPlan:
    """Sizes of the 24 um campaign (DCEs per AOR and AOR counts); defaults UNCONFIRMED.

    ``n_dark_aors`` x ``n_dark_dce`` 10 MIPS-s darks (one DCE of each DCENUM
    per AOR), ``n_dark3_aors`` x ``n_dark3_dce`` 3 MIPS-s darks (read-2 law),
    one ``n_flat_dce`` flat AOR per scan-mirror position (``flat_csm_pix``:
    None = the default photometry pattern's positions), ``n_droop_dce`` DCEs
    on/off the bright droop source.
    """

    n_dark_aors: int = 12
    n_dark_dce: int = 8
    n_dark3_aors: int = 2
    n_dark3_dce: int = 12
    n_flat_dce: int = 20
    n_droop_dce: int = 26
    flat_csm_pix: tuple | None = None
    flat_dx_pix: tuple = field(default_factory=lambda: tuple(float(x) for x in
                                                             np.linspace(-32.0, 32.0, 9)))
    flat_zodi_mjysr: float = 40.0          # zodi in flat fields: 30-51 MJy/sr [IOC-917I]
    flat_n_sources: int = 6
    flat_flux_jy: tuple = (0.001, 0.01)    # faint field sources (masked by the derivation)
    droop_zodi_mjysr: float = 15.0
    droop_blob_mjysr: float = 100.0        # keeps photocurrent below the latent threshold
    droop_blob_fwhm_arcsec: float = 25.0
    droop_off_dx_pix: float = 150.0


@dataclass(frozen=True)
class SiCampaign:
    """Where a simulated 24 um campaign lives: ``root/<aor>/`` folders and the truth file."""

    root: Path
    aors: dict          # kind ("dark10", "dark3", "flat", "droop") -> list of observation folders

    @property
    def truth(self) -> Path:
        """The campaign's truth file (true maps and scalars under ``/calibration``)."""
        return self.root / "campaign_truth.h5"


def flat_positions_arcsec(config_file=None, overrides: dict | None = None) -> np.ndarray:
    """Scan-mirror positions (arcsec) of the default 24 um photometry pattern, sorted."""
    cfg = load_config(config_file, **{"band": 24, **(overrides or {})})
    return np.unique([d[1] for d in cfg.dither_pix]) * default_si_detector(cfg).spec.pixel_arcsec


def campaign_configs(*, seed: int, plan: SiCampaignPlan | None = None, config_file=None,
                     overrides: dict | None = None) -> dict[str, list[SimConfig]]:
    """SimConfigs of the campaign's AORs: ``{"dark10": [...], "dark3": [...], "flat": [...], "droop": [cfg]}``.

    ``config_file`` and ``overrides`` set the detector and effect parameters of
    every AOR (as for ``mips simulate``); the campaign then fixes what makes
    each AOR what it is (exposure time, sky, dithers, pointing).
    """
    plan = plan or SiCampaignPlan()
    if plan.n_flat_dce < 3 + len(plan.flat_dx_pix):
        raise ValueError(f"n_flat_dce = {plan.n_flat_dce}: a flat AOR needs >= "
                         f"{3 + len(plan.flat_dx_pix)} DCEs to return to its first pointing "
                         f"(the first-frame factors' reference)")
    base = {**(overrides or {}), "band": 24}
    aorkey = iter(range(_AORKEY_BASE, _AORKEY_BASE + 100000))

    def cfg(kind, k, **fixed):
        return load_config(config_file, **{**base, "seed": aor_seed(seed, kind, k),
                                           "aorkey": next(aorkey), **fixed})

    dark = {"include_background": False, "include_sources": False}
    out = {"dark10": [cfg("dark10", k, n_dce=plan.n_dark_dce, exptime_mips_s=10, **dark)
                      for k in range(plan.n_dark_aors)],
           "dark3": [cfg("dark3", k, n_dce=plan.n_dark3_dce, exptime_mips_s=3, **dark)
                     for k in range(plan.n_dark3_aors)]}
    pixel = default_si_detector(load_config(config_file, **base)).spec.pixel_arcsec
    csm_pix = (plan.flat_csm_pix if plan.flat_csm_pix is not None
               else flat_positions_arcsec(config_file, overrides) / pixel)
    field = {"cirrus_contrast": 0.0, "cirrus_mjysr": 0.0, "blob_peak_mjysr": 0.0}
    out["flat"] = [cfg("flat", i, n_dce=plan.n_flat_dce, exptime_mips_s=10,
                       dither_pix=[[dx, float(dy)] for dx in plan.flat_dx_pix],
                       zodi_mjysr=plan.flat_zodi_mjysr, n_sources=plan.flat_n_sources,
                       flux_min_jy=plan.flat_flux_jy[0], flux_max_jy=plan.flat_flux_jy[1],
                       ra_deg=40.0 + 3.0 * i, dec_deg=-30.0, **field)
                   for i, dy in enumerate(csm_pix)]
    out["droop"] = [cfg("droop", 0, n_dce=plan.n_droop_dce, exptime_mips_s=10,
                        dither_pix=[[0.0, 0.0], [plan.droop_off_dx_pix, 0.0]],
                        zodi_mjysr=plan.droop_zodi_mjysr, n_sources=0,
                        blob_peak_mjysr=plan.droop_blob_mjysr,
                        blob_fwhm_arcsec=plan.droop_blob_fwhm_arcsec, ra_deg=120.0, dec_deg=10.0,
                        **{k: v for k, v in field.items() if k != "blob_peak_mjysr"})]
    return out


def simulate_si_campaign(out: str | Path, *, seed: int, plan: SiCampaignPlan | None = None,
                         config_file=None, overrides: dict | None = None, overwrite: bool = False,
                         progress=None) -> SiCampaign:
    """Simulate the 24 um campaign into ``out`` (one folder per AOR + ``campaign_truth.h5``).

    Parameters
    ----------
    out : path
        Campaign folder (created).
    seed : int
        Campaign seed; every AOR gets its own seed derived from it.
    plan : SiCampaignPlan, optional
        Campaign sizes.
    config_file, overrides
        Detector and effect parameters of every AOR (TOML file, dict).
    progress : callable, optional
        ``progress(done, total)`` over all DCEs of the campaign.

    Returns
    -------
    SiCampaign
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    cfgs = campaign_configs(seed=seed, plan=plan, config_file=config_file, overrides=overrides)
    total = sum(c.n_dce for group in cfgs.values() for c in group)
    done = 0
    aors = {}
    for kind, group in cfgs.items():
        aors[kind] = []
        for k, c in enumerate(group):
            folder = root / (f"{kind}_{k:02d}" if kind != "droop" else kind)
            step = None if progress is None else (lambda d, t, b=done: progress(b + d, total))
            simulate(c, folder, overwrite=overwrite, progress=step)
            done += c.n_dce
            aors[kind].append(folder)
    camp = SiCampaign(root=root, aors=aors)
    write_si_campaign_truth(camp.truth, true_si_calibration(cfgs["flat"][0], cfgs["flat"]),
                            seed=seed)
    return camp


def true_si_calibration(cfg: SimConfig, flat_cfgs=()) -> dict:
    """The true 24 um calibration of detector/effect configuration ``cfg`` (product definitions).

    Returns ``{"maps": {EXTNAME: array}, "attrs": {KEY: value}}``; flats are
    given at the scan-mirror positions of ``flat_cfgs`` (one each).
    """
    det = default_si_detector(cfg)
    spec = det.spec
    csm = np.array(sorted({c.dither_pix[0][1] * spec.pixel_arcsec for c in flat_cfgs}))
    darks = np.stack([det.dark(n, cfg.jailbar_factors, include_jailbar=cfg.include_jailbar)
                      for n in range(len(cfg.jailbar_factors))])
    if not cfg.include_dark:
        darks = np.zeros_like(darks)
    flats = np.stack([det.gainflat * det.spot_map(c, include=cfg.include_spots) for c in csm])
    amp = cfg.read2_dn if cfg.include_read2 else 0.0
    ff = np.asarray(cfg.first_frame_factors if cfg.include_first_frame
                    else np.ones(len(cfg.first_frame_factors)), dtype=float)
    maps = {"DARK": darks, "FLATS": flats, "CSMPOS": csm,
            "READ2": read2_deficit(spec.shape, amp, cfg.read2_scale_rows),
            "READNOIS": det.read_noise, "PMASK": det.pmask, "FIRSTFRM": ff}
    attrs = {"DROOP": cfg.droop_coeff if cfg.include_droop else 0.0,
             "RDROOP": cfg.row_droop_coeff if cfg.include_row_droop else 0.0,
             "READ2": amp, "READ2SCL": cfg.read2_scale_rows, "FIRSTFRM": ff,
             "FLUXCONV": 1.0 / spec.dn_s_per_mjysr, "GAIN": cfg.gain_e_per_dn or spec.gain_e_per_dn,
             "SATLEVEL": spec.saturation_dn, "BAND": 24}
    return {"maps": maps, "attrs": attrs}


def write_si_campaign_truth(path: Path, truth: dict, *, seed: int) -> None:
    """The true maps under ``/calibration/<EXTNAME>``, scalars as ``/calibration`` attributes."""
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        g = f.create_group("calibration")
        for ext, data in truth["maps"].items():
            g.create_dataset(ext, data=np.asarray(data))
        g.attrs.update({**truth["attrs"], "SEED": seed})
    tmp.replace(path)
