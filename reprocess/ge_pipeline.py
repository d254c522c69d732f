"""Ge raw -> BCD pipeline for one observation folder (GeRT-like).

``reprocess_ge(obs_dir)`` reads ``obs_dir/raw/*_raw.fits`` and writes, into
``obs_dir/bcd/``, for every sky DCE a BCD (MJy/sr), its ``_bunc`` (1 sigma)
and ``_bmask`` (bits in :mod:`calibration.bitmask`), plus ``ramps.h5``
holding every DCE's slope, error, jump flags and the stim responses (the
GeRT intermediates, for validation and inspection).  Stim DCEs calibrate
the others and get no BCD.

Order of operations per DCE: saturation -> nonlinearity -> jumps -> slope
(:mod:`.sloper`); then, over the observation, stim-minus-background ->
responsivity interpolated in time -> dark -> illumination correction -> flux
conversion (:mod:`.stim`).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from calibration.bitmask import BMASK, PMASK_FATAL
from calibration.configuration import resolve
from calibration.products import CalProducts, load_products

from .io import (bcd_header, raw_files, read_all, read_raw_dce, software, staged_output,
                 write_bcd_set)
from .ramps import DEFAULT_THRESHOLD, false_jump_rate
from .sloper import slope_dces
from .stim import calibrate, constant_response, interpolate_response, stim_minus_background

__all__ = ["ReprocessConfig", "ReprocessReport", "reprocess_ge", "load_reprocess_config"]

log = logging.getLogger(__name__)
_BATCH = 32   # DCEs fitted together (pixels are independent; bounds memory)


@dataclass
class ReprocessConfig:
    """Reprocessing parameters (defaults < TOML file < command line)."""

    jump_threshold: float = DEFAULT_THRESHOLD   # sigma of one read difference
    min_segment_reads: int = 4                  # [GeRT /4]
    stim_mode: str = "interp"                   # "interp" (GeRT) or "constant" (tracking off)
    nonlinearity: bool = True
    products: str | None = None                 # path of a product set; None = shipped one

    def __post_init__(self):
        if self.stim_mode not in ("interp", "constant"):
            raise ValueError(f"stim_mode must be 'interp' or 'constant', got {self.stim_mode!r}")
        if not self.jump_threshold > 0 or self.min_segment_reads < 2:
            raise ValueError("jump_threshold must be > 0 and min_segment_reads >= 2")


def load_reprocess_config(path=None, **overrides) -> ReprocessConfig:
    """Defaults, then the TOML file at ``path``, then non-None ``overrides``."""
    return resolve(ReprocessConfig, path, overrides)


@dataclass
class ReprocessReport:
    """What a run did."""

    out_dir: Path
    n_bcd: int = 0
    n_stim: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def reprocess_ge(obs_dir: str | os.PathLike, *, config: ReprocessConfig | None = None,
                 products: CalProducts | None = None, keep_going: bool = False,
                 overwrite: bool = False, progress=None) -> ReprocessReport:
    """Turn ``obs_dir/raw`` into ``obs_dir/bcd``; see the module notes.

    Raises :class:`~reprocess.io.InputError` on the first bad input unless
    ``keep_going``, in which case bad files are skipped and listed in the report.
    """
    cfg = config or ReprocessConfig()
    obs = Path(obs_dir)
    paths = raw_files(obs)
    bcd_dir = obs / "bcd"
    with staged_output(bcd_dir, overwrite) as stage:
        report = _run(paths, stage, cfg, products, keep_going, progress)
    report.out_dir = bcd_dir
    log.info("wrote %d BCDs (%d stim DCEs used for calibration) to %s",
             report.n_bcd, report.n_stim, bcd_dir)
    return report


def _run(paths, stage, cfg, products, keep_going, progress) -> ReprocessReport:
    """The pipeline proper, writing into the staging folder ``stage``."""
    report = ReprocessReport(out_dir=stage)
    dces = read_all(paths, read_raw_dce, keep_going=keep_going, failures=report.failures)
    for path, problem in report.failures:
        log.error("%s: %s", path, problem)
    prod = products or load_products(dces[0].band, cfg.products)
    prod.check_shape(dces[0].reads.shape[1:], str(dces[0].path))

    slopes = []
    for b0 in range(0, len(dces), _BATCH):
        batch = dces[b0:b0 + _BATCH]
        slopes += slope_dces([d.reads for d in batch], read_time=float(batch[0].header["SAMPTIME"]),
                             nramps=batch[0].nramps, gain=prod.gain, read_noise=prod.read_noise,
                             saturation_dn=prod.saturation_dn, enl_beta=prod.enl_beta,
                             enl_zero=prod.enl_zero, apply_nonlinearity=cfg.nonlinearity,
                             threshold=cfg.jump_threshold, min_segment_reads=cfg.min_segment_reads,
                             batch=_BATCH)
        if progress is not None:
            progress(len(slopes), 2 * len(dces))
    slope = np.stack([s.slope for s in slopes])
    err = np.stack([s.slope_err for s in slopes])
    is_stim = np.array([d.stim for d in dces])
    times = np.array([d.mjd_mid for d in dces])
    pointing = _pointing_labels(dces)
    stim = stim_minus_background(slope, err, is_stim, times, pointing)
    if cfg.stim_mode == "constant":
        const = constant_response(stim)

    fatal = (prod.pmask & PMASK_FATAL) != 0
    for i, (dce, s) in enumerate(zip(dces, slopes)):
        if dce.stim:
            report.n_stim += 1
            continue
        resp, resp_err, rflags = (const if cfg.stim_mode == "constant"
                                  else interpolate_response(stim, times[i]))
        image, unc = calibrate(s.slope, s.slope_err, resp, resp_err, dark=prod.dark,
                               illum=prod.illum, fluxconv=prod.fluxconv)
        mask = s.flags | rflags | np.where(fatal, BMASK["PMASK"], 0)
        _write_bcd(dce, image, unc, mask, prod, cfg, stage)
        report.n_bcd += 1
        if progress is not None:
            progress(len(dces) + i + 1, 2 * len(dces))
    _write_ramps(stage / "ramps.h5", dces, slopes, stim, prod, cfg)
    return report


def _pointing_labels(dces) -> np.ndarray:
    """Equal labels for DCEs whose reference pixels point within 0.1 arcsec of each other."""
    keys = [(round(float(d.header["CRVAL1"]) * 36000), round(float(d.header["CRVAL2"]) * 36000))
            for d in dces]
    lookup: dict = {}
    return np.array([lookup.setdefault(k, len(lookup)) for k in keys])


def _write_bcd(dce, image, unc, mask, prod, cfg, stage):
    hdr = bcd_header(dce, {
        "FLUXCONV": (prod.fluxconv, "[MJy/sr per MIPS unit] flux conversion"),
        "CALID": (prod.calid, "calibration product set"),
        "CREATOR": (software(), "software that made this file"),
        "STIMCAL": (cfg.stim_mode, "responsivity: interp(olated stim) or constant"),
        "JUMPTHR": (cfg.jump_threshold, "[sigma] jump threshold"),
        "MINREADS": (cfg.min_segment_reads, "min reads per segment"),
        "ENLCORR": (cfg.nonlinearity, "electronic nonlinearity corrected")})
    hdr += [("HISTORY", f"reprocess config {k} = {v!r}", "")
            for k, v in dataclasses.asdict(cfg).items()]
    write_bcd_set(dce, hdr, (("bcd", image.astype(np.float32), "MJy/sr"),
                             ("bunc", unc.astype(np.float32), "MJy/sr"),
                             ("bmask", mask.astype(np.int32), "")), stage)


def _write_ramps(path: Path, dces, slopes, stim, prod, cfg) -> None:
    """Per-DCE slopes, errors, jumps and the stim responses (into the staging folder)."""
    with h5py.File(path, "w") as h5:
        h5.attrs["calid"] = prod.calid
        h5.attrs["software"] = software()
        h5.attrs["jump_threshold"] = cfg.jump_threshold
        h5.attrs["false_jump_rate"] = false_jump_rate(cfg.jump_threshold)
        for dce, s in zip(dces, slopes):
            g = h5.create_group(f"dce/{dce.stem}")
            g.create_dataset("slope_dn_s", data=s.slope)
            g.create_dataset("slope_err_dn_s", data=s.slope_err)
            g.create_dataset("jumps", data=s.jumps, compression="gzip")
            g.create_dataset("first_unusable_read", data=s.first_unusable)
            g.create_dataset("flags", data=s.flags)
            g.attrs["stim"] = dce.stim
            g.attrs["mjd_mid"] = dce.mjd_mid
            g.attrs["nramps"] = dce.nramps
        h5.create_dataset("stim/t_mjd", data=stim.t)
        h5.create_dataset("stim/response_dn_s", data=stim.value)
        h5.create_dataset("stim/response_err_dn_s", data=stim.err)
