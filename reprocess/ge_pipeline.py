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
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import warnings

import numpy as np
from astropy.wcs import WCS, FITSFixedWarning

from calibration.bitmask import BMASK, PMASK_FATAL
from calibration.configuration import ConfigError, check_ranges, resolve
from calibration.folders import hdf5_file
from calibration.products import CalProducts, load_products

from .io import (InputError, bcd_header, raw_files, read_all, read_raw_dce, software,
                 staged_output, write_bcd_set)
from .ramps import DEFAULT_THRESHOLD, false_jump_rate
from .leak import leak_mask, read_leak_catalog
from .sloper import slope_dces
from .stim import (FIRST_STIM_MODES, Hits, MovingSky, NoStimError, calibrate, constant_response,
                   interpolate_response, same_sky, stim_minus_background)

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
    stim_tolerance_pix: float = 0.4             # sky DCEs within this of a flash are its sky (< half-pixel dithers)
    stim_min_snr: float = 5.0                   # a pixel's flash must exceed this many sigma
    first_stim: str = "auto"                    # "auto" (rescale if anomalous), "auto-drop", "drop", "keep"
    moving_sky: bool = True                     # flashes at pointings no sky DCE shares (scan maps): the sky
    #   their pixels saw in the neighbouring DCEs (reprocess/stim/moving_sky.py); False: the same
    #   pixels' values there (the archive's way)
    leak_catalog: str | None = None             # 160 um: ECSV of hot sources' near-IR fluxes (reprocess/leak.py)
    leak_min_jy: float = 0.01                   # flag where the predicted ghost is at least this, Jy

    def __post_init__(self):
        """Ranges (types are checked by :func:`calibration.configuration.resolve`)."""
        if self.stim_mode not in ("interp", "constant"):
            raise ConfigError("stim_mode", f"must be 'interp' or 'constant', not {self.stim_mode!r}")
        if self.first_stim not in FIRST_STIM_MODES:
            raise ConfigError("first_stim", f"must be one of {FIRST_STIM_MODES}, not {self.first_stim!r}")
        if self.min_segment_reads < 2:
            raise ConfigError("min_segment_reads", "must be >= 2")
        check_ranges(self, positive=("jump_threshold", "stim_tolerance_pix", "stim_min_snr"),
                     nonnegative=("leak_min_jy",))


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
    skipped: bool = False        # complete and valid already (reprocess.batch): nothing was done


def reprocess_ge(obs_dir: str | os.PathLike, *, config: ReprocessConfig | None = None,
                 products: CalProducts | None = None, keep_going: bool = False,
                 overwrite: bool = False, progress=None, on_commit=None, paths=None, stage=None,
                 ramps_name: str = "ramps.h5") -> ReprocessReport:
    """Turn ``obs_dir/raw`` into ``obs_dir/bcd``; see the module notes.

    Raises :class:`~reprocess.io.InputError` on the first bad input unless
    ``keep_going``, in which case bad files are skipped and listed in the report.
    ``on_commit(stage, report)``, if given, runs on the complete staging folder
    just before its commit (the manifest of :mod:`reprocess.batch`).  A multi-array
    run (:mod:`reprocess.pipeline`) gives this array's raw files (``paths``, default
    all of ``raw/``), the staging folder it commits itself (``stage``) and the name
    of the ramp file (``ramps_name``).
    """
    cfg = config or ReprocessConfig()
    obs = Path(obs_dir)
    paths = raw_files(obs) if paths is None else list(paths)
    bcd_dir = obs / "bcd"
    output = staged_output(bcd_dir, overwrite) if stage is None else nullcontext(stage)
    with output as stage:  # noqa: PLR1704 -- a multi-array run's staging folder, or our own
        report = _run(paths, stage, cfg, products, keep_going, progress, ramps_name)
        if on_commit is not None:
            on_commit(stage, report)
    report.out_dir = bcd_dir
    log.info("wrote %d BCDs (%d stim DCEs used for calibration) to %s",
             report.n_bcd, report.n_stim, bcd_dir)
    return report


def _run(paths, stage, cfg, products, keep_going, progress, ramps_name="ramps.h5") -> ReprocessReport:
    """The pipeline proper, writing into the staging folder ``stage``."""
    report = ReprocessReport(out_dir=stage)
    dces = read_all(paths, read_raw_dce, keep_going=keep_going, failures=report.failures)
    for path, problem in report.failures:
        log.error("%s: %s", path, problem)
    prod = products or load_products(dces[0].band, cfg.products)
    prod.check_shape(dces[0].reads.shape[1:], str(paths[0].parent))
    leaks = read_leak_catalog(cfg.leak_catalog) if cfg.leak_catalog else None
    slopes = _slopes(dces, prod, cfg, progress)
    times = np.array([_slope_time(d, s) for d, s in zip(dces, slopes)])
    fatal = (prod.pmask & PMASK_FATAL) != 0
    stim = _stim_response(dces, slopes, times, fatal, cfg, paths[0].parent, prod)
    report.n_stim = stim.report["n_usable"]
    if cfg.stim_mode == "constant":
        const = constant_response(stim)

    for i, (dce, s) in enumerate(zip(dces, slopes)):
        if dce.stim:
            continue
        resp, resp_err, rflags = (const if cfg.stim_mode == "constant"
                                  else interpolate_response(stim, times[i]))
        image, unc = calibrate(s.slope, s.slope_err, resp, resp_err, dark=prod.dark,
                               illum=prod.illum, fluxconv=prod.fluxconv,
                               dark_err=prod.error("dark"), illum_err=prod.error("illum"))
        image[fatal] = np.nan
        unc[fatal] = np.nan
        mask = s.flags | rflags | np.where(fatal, BMASK["PMASK"], 0)
        if i > 0 and dces[i - 1].stim:       # flagged, not corrected (neither did the SSC)
            mask |= BMASK["STIM_LATENT"]
        if leaks is not None:
            mask |= np.where(leak_mask(dce.header, image.shape, leaks, min_jy=cfg.leak_min_jy),
                             BMASK["LEAK"], 0)
        _write_bcd(dce, image, unc, mask, prod, cfg, stim, stage)
        report.n_bcd += 1
        if progress is not None:
            progress(len(dces) + i + 1, 2 * len(dces))
    _write_ramps(stage / ramps_name, dces, slopes, times, stim, prod, cfg)
    return report


def _slopes(dces, prod, cfg, progress) -> list:
    """SLOPER on every DCE, batching DCEs that share their read timing and ramp layout."""
    slopes: list = [None] * len(dces)
    layout = [(d.reads.shape[0], d.samptime, d.nramps) for d in dces]
    done = 0
    for key in sorted(set(layout)):
        members = [i for i, k in enumerate(layout) if k == key]
        for b0 in range(0, len(members), _BATCH):
            batch = members[b0:b0 + _BATCH]
            fits_ = slope_dces([dces[i].reads for i in batch], read_time=key[1], nramps=key[2],
                               gain=prod.gain, read_noise=prod.read_noise,
                               excess_noise=prod.excess_noise,
                               saturation_dn=prod.saturation_dn, enl_beta=prod.enl_beta,
                               enl_zero=prod.enl_zero, apply_nonlinearity=cfg.nonlinearity,
                               threshold=cfg.jump_threshold,
                               min_segment_reads=cfg.min_segment_reads,
                               enl_beta_err=prod.error("enl_beta"), batch=_BATCH)
            for i, f in zip(batch, fits_):
                slopes[i] = f
            done += len(batch)
            if progress is not None:
                progress(done, 2 * len(dces))
    return slopes


def _slope_time(dce, s) -> float:
    """MJD of the mean time of the reads the DCE's slope used (median over its pixels).

    A ramp that saturates (a stim flash often does) describes the responsivity
    of its first part only.  With every read used this is the DCE's mid-time,
    ``MJD_OBS + NREADS SAMPTIME / 2`` (any constant offset of the read times
    cancels in the interpolations).
    """
    nreads = dce.reads.shape[0]
    used = np.clip(s.first_unusable[np.isfinite(s.slope)], 2, nreads)
    n_used = float(np.median(used)) if used.size else float(nreads)
    return float(dce.header["MJD_OBS"]) + 0.5 * n_used * dce.samptime / 86400.0


def _stim_response(dces, slopes, times, fatal, cfg, raw_dir, prod):
    """The usable stim flashes, bad pixels left out (NoStimError -> InputError naming the folder)."""
    positions, pixel_rad, offsets = _sky_positions(dces)
    match = same_sky(positions, cfg.stim_tolerance_pix * pixel_rad)
    moving = _moving_sky(dces, match, times, prod) if cfg.moving_sky else None
    hits = Hits.from_jumps([float(d.header["MJD_OBS"]) for d in dces],
                           [d.samptime / 86400.0 for d in dces],
                           [s.jumps for s in slopes])
    try:
        stim = stim_minus_background(np.stack([np.where(fatal, np.nan, s.slope) for s in slopes]),
                                     np.stack([s.slope_err for s in slopes]),
                                     np.array([d.stim for d in dces]), times, match,
                                     min_snr=cfg.stim_min_snr, first_stim=cfg.first_stim,
                                     hits=hits, offsets=offsets, moving=moving)
    except NoStimError as exc:
        raise InputError(raw_dir, f"{exc}; the DCEs cannot be calibrated") from None
    for idx, why in stim.report["dropped"]:
        log.warning("%s: stim flash not used: %s", dces[idx].path.name, why)
    unmatched = stim.report["neighbour_background"]
    if unmatched:
        log.info("%d flash(es) at pointings no sky DCE shares (the sky moves: a scan map?): "
                 "background from the sky their pixels saw in the DCEs around them (%d re-measured)",
                 len(unmatched), stim.report.get("moving_sky_flashes", 0))
    for idx, why in stim.report.get("rescaled", []):
        log.warning("%s: %s", dces[idx].path.name, why)
    for lo, hi, size in stim.report.get("steps", []):
        log.warning("responsivity step of %+.2f%% between the flashes at MJD %.5f and %.5f (an "
                    "anneal?): the DCEs between carry its cost in _bunc and the RESP_STEP bit",
                    100 * size, lo, hi)
    log.info("%d of %d stim flashes usable; responsivity wander: %.2g per day (relative "
             "variance) and %.2g per flagged jump", stim.report["n_usable"],
             stim.report["n_flashes"], stim.wander.kappa, stim.wander.step_var)
    return stim


def _moving_sky(dces, match, times, prod, n_side: int = 2) -> MovingSky:
    """For each flash no sky DCE shares the pointing of: where its pixel centres fall in the
    ``n_side`` nearest sky DCEs before and after it in time (``MovingSky``)."""
    is_stim = np.array([d.stim for d in dces])
    sky = np.flatnonzero(~is_stim)
    sky = sky[np.argsort(times[sky], kind="stable")]
    ny, nx = dces[0].reads.shape[1:]
    yy, xx = np.mgrid[0:ny, 0:nx]
    pix = np.column_stack([xx.ravel(), yy.ravel()]).astype(float)
    wcs_of = _WcsCache()
    coords = {}
    for i in np.flatnonzero(is_stim):
        if match[i, sky].any():
            continue
        world = wcs_of(dces[i]).all_pix2world(pix, 0)
        before = sky[times[sky] < times[i]][-n_side:]
        after = sky[times[sky] > times[i]][:n_side]
        coords[int(i)] = [(int(j), wcs_of(dces[j]).all_world2pix(world, 0)[:, ::-1].T.reshape(2, ny, nx))
                          for j in np.concatenate([before, after])]
    return MovingSky(coords=coords, illum=prod.illum, dark=prod.dark)


def _sky_positions(dces):
    """Where each DCE pointed: unit vectors of the array centre and a corner (NDCE, 2, 3), the
    pixel size (rad), and the array centre's (x, y) pixel position in the first DCE's frame."""
    ny, nx = dces[0].reads.shape[1:]
    pix = np.array([[(nx - 1) / 2.0, (ny - 1) / 2.0], [0.0, 0.0]])
    out = np.empty((len(dces), 2, 3))
    wcs_of = _WcsCache()
    frame = wcs_of(dces[0])
    offsets = np.empty((len(dces), 2))
    scale = []
    for n, d in enumerate(dces):
        w = wcs_of(d)
        world = w.all_pix2world(pix, 0)
        ra, dec = np.radians(world).T
        out[n] = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
        offsets[n] = frame.all_world2pix(world[:1], 0)[0]
        scale.append(np.sqrt(abs(np.linalg.det(w.pixel_scale_matrix))))
    return out, float(np.radians(np.median(scale))), offsets


class _WcsCache:
    """Celestial WCSs of DCEs; DCEs whose WCS cards differ only in CRVAL share one parse.

    Parsing a SIP header costs astropy ~7 ms; the DCEs of an AOR normally share
    everything but the pointing, so the first parse is copied and re-pointed.
    """

    def __init__(self):
        self._parsed: dict = {}

    def __call__(self, dce) -> WCS:
        cards = tuple(c for c in dce.card_images if c.startswith(_WCS_SHAPE_PREFIXES))
        base = self._parsed.get(cards)
        if base is None:
            base = self._parsed[cards] = celestial_wcs(dce)
        w = base.deepcopy()
        w.wcs.crval = [float(dce.header["CRVAL1"]), float(dce.header["CRVAL2"])]
        return w


def celestial_wcs(dce) -> WCS:
    """The celestial WCS (SIP included) of a raw DCE's header."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(dce.header, naxis=2)


# WCS cards other than the pointing (CRVAL): projection, reference pixel, matrix, distortion
_WCS_SHAPE_PREFIXES = ("CTYPE", "CRPIX", "CD1_", "CD2_", "CDELT", "PC1_", "PC2_", "CROTA", "A_",
                       "B_", "AP_", "BP_", "RADESYS", "EQUINOX", "LONPOLE", "LATPOLE")


def _write_bcd(dce, image, unc, mask, prod, cfg, stim, stage):
    hdr = bcd_header(dce, {
        "STIMUSED": (stim.report["n_usable"], "usable stim flashes in the observation"),
        "STIMKAPP": (stim.wander.kappa, "[1/d] smooth responsivity wander, rel. variance"),
        "STIMSTEP": (stim.wander.step_var, "rel. variance of a responsivity step per jump"),
        "FLUXCONV": (prod.fluxconv, "[MJy/sr per MIPS unit] flux conversion"),
        "FLUXERR": (float(prod.error("fluxconv")), "[MJy/sr per MIPS unit] its 1 sigma (systematic)"),
        "CALID": (prod.calid, "calibration product set"),
        "CALFILE": (str(prod.meta.get("path", "")), "its file ('' if given in memory)"),
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


def _write_ramps(path: Path, dces, slopes, times, stim, prod, cfg) -> None:
    """Per-DCE slopes, errors, jumps and the stim responses (into the staging folder)."""
    with hdf5_file(path) as h5:
        h5.attrs["calid"] = prod.calid
        h5.attrs["software"] = software()
        h5.attrs["jump_threshold"] = cfg.jump_threshold
        h5.attrs["false_jump_rate"] = false_jump_rate(cfg.jump_threshold)
        for dce, s, t in zip(dces, slopes, times):
            g = h5.create_group(f"dce/{dce.stem}")
            g.create_dataset("slope_dn_s", data=s.slope)
            g.create_dataset("slope_err_dn_s", data=s.slope_err)
            # compressed chunks wait in the dataset's chunk cache until it is flushed or closed;
            # flushed now, their place in the file does not depend on when Python frees the
            # Dataset object -- dask's sampling profiler, in its workers, may hold it: ramps.h5 is
            # byte-identical for any worker count
            g.create_dataset("jumps", data=s.jumps, compression="gzip").flush()
            g.create_dataset("first_unusable_read", data=s.first_unusable)
            g.create_dataset("flags", data=s.flags)
            g.attrs["stim"] = dce.stim
            g.attrs["mjd_mid"] = dce.mjd_mid
            g.attrs["mjd_slope"] = t
            g.attrs["nramps"] = dce.nramps
        h5.create_dataset("stim/t_mjd", data=stim.t)
        h5.create_dataset("stim/response_dn_s", data=stim.value)
        h5.create_dataset("stim/response_err_dn_s", data=stim.err)
        h5["stim"].attrs["kappa_per_day"] = stim.wander.kappa
        h5["stim"].attrs["step_var_per_jump"] = stim.wander.step_var
        h5["stim"].attrs["n_flashes"] = stim.report["n_flashes"]
        h5["stim"].attrs["dropped"] = "\n".join(f"{dces[i].stem}: {why}"
                                                for i, why in stim.report["dropped"])
