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

Memory
------
The stim calibration needs every flash before any DCE can be calibrated, so the
pipeline makes passes over the observation, and keeps between them only what
does not grow with the DCEs' data:

1. :func:`reprocess.io.read_all` reads and checks every raw file and keeps a
   ~1 kB summary of each (identity, timing, stim flag, SHA-1) for the folder
   checks and the time order;
2. :func:`_fit_pass` reads the DCEs again, ``_BATCH`` at a time in time order
   (the bytes checked against the first reading), fits their ramps and spills
   slopes, errors, jump flags and header cards to an unlinked file beside the
   products (:mod:`.spill`); it keeps the side tables -- slope times,
   pointings, each DCE's WCS as a shared template and its CRVAL -- and the
   jumps as a flat hit table (those of permanently bad pixels, most of them,
   left out: those pixels have no responsivity to track);
3. the stim flashes are measured with the slopes read back on demand (a
   bounded cache), the flash-to-sky match kept for the flash rows only;
4. each sky DCE is calibrated and written from its spilled slope, and
   ``ramps.h5`` is written from the spill by a child process (:mod:`.ramps_h5`).

Peak memory is then flat in the number of DCEs (``benchmarks/memory_scaling.py``
measures it: most of it is the libraries and the compiled ramp kernel), and the
products are byte-identical to fitting everything at once.
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
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from calibration.bitmask import BMASK, PMASK_FATAL
from calibration.configuration import ConfigError, check_ranges, resolve
from calibration.products import CalProducts, load_products

from .io import (InputError, RawDCE, bcd_header, raw_files, read_all, read_raw_dce, reread, software,
                 staged_output, write_bcd_set)
from .ramps import DEFAULT_THRESHOLD, false_jump_rate
from .ramps_h5 import write_ramps_file
from .leak import leak_mask, read_leak_catalog
from .sloper import slope_dces
from .spill import Spill, SpilledMapping, SpilledMaps
from .stim import (FIRST_STIM_MODES, Hits, MovingSky, NoStimError, calibrate, constant_response,
                   interpolate_response, stim_minus_background)

__all__ = ["ReprocessConfig", "ReprocessReport", "reprocess_ge", "load_reprocess_config"]

log = logging.getLogger(__name__)
_BATCH = 32   # DCEs read and fitted together (pixels are independent; bounds memory)


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
    """The pipeline proper, writing into the staging folder ``stage`` (module notes: Memory)."""
    report = ReprocessReport(out_dir=stage)
    index = read_all(paths, read_raw_dce, keep_going=keep_going, failures=report.failures,
                     keep_data=False)
    for path, problem in report.failures:
        log.error("%s: %s", path, problem)
    prod = products or load_products(index[0].band, cfg.products)
    prod.check_shape(index[0].data_shape[1:], str(paths[0].parent))
    leaks = read_leak_catalog(cfg.leak_catalog) if cfg.leak_catalog else None
    fatal = (prod.pmask & PMASK_FATAL) != 0
    with Spill(stage.parent) as spill:
        side = _fit_pass(index, prod, cfg, fatal, spill, progress)
        stim = _stim_response(side, spill, fatal, cfg, paths[0].parent, prod)
        report.n_stim = stim.report["n_usable"]
        const = constant_response(stim) if cfg.stim_mode == "constant" else None
        for i in range(len(index)):
            if side.is_stim[i]:
                continue
            _calibrate_and_write(i, side, spill, stim, const, prod, cfg, fatal, leaks, stage)
            report.n_bcd += 1
            if progress is not None:
                progress(len(index) + i + 1, 2 * len(index))
        _write_ramps(stage / ramps_name, side, spill, stim, prod, cfg)
    return report


def _calibrate_and_write(i, side, spill, stim, const, prod, cfg, fatal, leaks, stage) -> None:
    """Calibrate sky DCE ``i`` from its spilled slope and write its BCD, _bunc and _bmask."""
    dce = side.dce(spill, i, full_header=leaks is not None)
    slope, slope_err = spill.get(("slope", i)), spill.get(("slope_err", i))
    resp, resp_err, rflags = const if const is not None else interpolate_response(stim, side.times[i])
    image, unc = calibrate(slope, slope_err, resp, resp_err, dark=prod.dark,
                           illum=prod.illum, fluxconv=prod.fluxconv,
                           dark_err=prod.error("dark"), illum_err=prod.error("illum"))
    image[fatal] = np.nan
    unc[fatal] = np.nan
    mask = spill.get(("flags", i)) | rflags | np.where(fatal, BMASK["PMASK"], 0)
    if i > 0 and side.is_stim[i - 1]:       # flagged, not corrected (neither did the SSC)
        mask |= BMASK["STIM_LATENT"]
    if leaks is not None:
        mask |= np.where(leak_mask(dce.header, image.shape, leaks, min_jy=cfg.leak_min_jy),
                         BMASK["LEAK"], 0)
    _write_bcd(dce, image, unc, mask, prod, cfg, stim, stage)


@dataclass
class _Side:
    """What the passes after the ramp fit need of every DCE, besides its spilled arrays: the
    small side tables (time, stim flag, pointing, the WCS as a shared template and its CRVAL),
    the jumps as a flat hit table, and the DCEs' summaries (:meth:`reprocess.io.RawDCE.summary`)."""

    summaries: list
    times: np.ndarray                  # MJD of the reads each slope used (_slope_time)
    is_stim: np.ndarray
    positions: np.ndarray              # (NDCE, 2, 3) unit vectors: array centre and a corner
    offsets: np.ndarray                # (NDCE, 2) array centre in the first DCE's pixel frame
    pixel_rad: float                   # median pixel size, rad
    wcs_key: np.ndarray                # (NDCE,) index of the DCE's WCS template in wcs_of
    crval: np.ndarray                  # (NDCE, 2) deg
    wcs_of: _WcsCache
    hits: Hits
    frame: tuple                       # (NY, NX)

    def wcs(self, i: int) -> WCS:
        """Celestial WCS of DCE ``i`` (its template re-pointed, as :class:`_WcsCache` does)."""
        return self.wcs_of.pointed(int(self.wcs_key[i]), self.crval[i])

    def dce(self, spill: Spill, i: int, *, full_header: bool = False) -> RawDCE:
        """DCE ``i`` without its data: its summary with the header cards as in the file (and,
        if ``full_header``, the header parsed from them; else the summary's few keywords)."""
        s = self.summaries[i]
        text = spill.get(("cards", i)).tobytes().decode("utf-8")
        cards = tuple(text[k:k + 80] for k in range(0, len(text), 80))
        header = fits.Header.fromstring("".join(cards)) if full_header else s.header
        return RawDCE(path=s.path, reads=None, header=header, card_images=cards, sha1=s.sha1,
                      data_shape=s.data_shape)


def _fit_pass(index, prod, cfg, fatal, spill, progress) -> _Side:
    """Read the DCEs again ``_BATCH`` at a time in time order, fit their ramps (:mod:`.sloper`),
    spill the results and the header cards, and build the side tables."""
    n = len(index)
    frame = tuple(index[0].data_shape[1:])
    times, positions, offsets = np.empty(n), np.empty((n, 2, 3)), np.empty((n, 2))
    wcs_key, crval, scales = np.empty(n, dtype=np.intp), np.empty((n, 2)), []
    wcs_of = _WcsCache()
    alive = ~fatal.ravel()
    hit_t, hit_pix = [], []
    reference = None
    for b0 in range(0, n, _BATCH):
        dces = [reread(s) for s in index[b0:b0 + _BATCH]]
        for i, (dce, s) in enumerate(zip(dces, _slopes(dces, prod, cfg)), start=b0):
            reference = reference or wcs_of(dce)
            times[i] = _slope_time(dce, s)
            positions[i], offsets[i], scale = _sky_position(wcs_of(dce), reference, frame)
            scales.append(scale)
            wcs_key[i], crval[i] = wcs_of.key(dce), _crval(dce)
            # the jumps as hits (times, pixels); permanently bad pixels have no responsivity to
            # track (their flashes are NaN), so their hits -- most of all hits: they are noisy --
            # are left out, which changes no other pixel's numbers
            k, pix = np.nonzero(s.jumps.reshape(s.jumps.shape[0], -1))
            keep = alive[pix]
            hit_t.append(float(dce.header["MJD_OBS"]) + k[keep] * (dce.samptime / 86400.0))
            hit_pix.append(pix[keep])
            for name in ("slope", "slope_err", "jumps", "first_unusable", "flags"):
                spill.put((name, i), getattr(s, name))
            spill.put(("cards", i), np.frombuffer("".join(dce.card_images).encode("utf-8"),
                                                  dtype=np.uint8))
        if progress is not None:
            progress(min(b0 + _BATCH, n), 2 * n)
    t = np.concatenate(hit_t) if hit_t else np.zeros(0)
    pix = np.concatenate(hit_pix) if hit_pix else np.zeros(0, dtype=np.intp)
    order = np.argsort(t, kind="stable")
    return _Side(summaries=index, times=times, is_stim=np.array([d.stim for d in index], dtype=bool),
                 positions=positions, offsets=offsets, pixel_rad=float(np.radians(np.median(scales))),
                 wcs_key=wcs_key, crval=crval, wcs_of=wcs_of, hits=Hits(t[order], pix[order]),
                 frame=frame)


def _slopes(dces, prod, cfg) -> list:
    """SLOPER on the DCEs ``dces``, fitting together those that share their read timing and ramp
    layout (pixels are independent: the numbers do not depend on what is fitted together)."""
    slopes: list = [None] * len(dces)
    layout = [(d.reads.shape[0], d.samptime, d.nramps) for d in dces]
    for key in sorted(set(layout)):
        members = [i for i, k in enumerate(layout) if k == key]
        fits_ = slope_dces([dces[i].reads for i in members], read_time=key[1], nramps=key[2],
                           gain=prod.gain, read_noise=prod.read_noise,
                           excess_noise=prod.excess_noise,
                           saturation_dn=prod.saturation_dn, enl_beta=prod.enl_beta,
                           enl_zero=prod.enl_zero, apply_nonlinearity=cfg.nonlinearity,
                           threshold=cfg.jump_threshold,
                           min_segment_reads=cfg.min_segment_reads,
                           enl_beta_err=prod.error("enl_beta"), batch=_BATCH)
        for i, f in zip(members, fits_):
            slopes[i] = f
    return slopes


def _slope_time(dce, s) -> float:
    """MJD of the mean time of the reads the DCE's slope used (median over its pixels).

    A ramp that saturates (a stim flash often does) describes the responsivity
    of its first part only.  With every read used this is the DCE's mid-time,
    ``MJD_OBS + NREADS SAMPTIME / 2`` (any constant offset of the read times
    cancels in the interpolations).
    """
    nreads = dce.data_shape[0]
    used = np.clip(s.first_unusable[np.isfinite(s.slope)], 2, nreads)
    n_used = float(np.median(used)) if used.size else float(nreads)
    return float(dce.header["MJD_OBS"]) + 0.5 * n_used * dce.samptime / 86400.0


def _stim_response(side: _Side, spill: Spill, fatal, cfg, raw_dir, prod):
    """The usable stim flashes, bad pixels left out (NoStimError -> InputError naming the folder).

    The slopes are read back from the spill as the stim code asks for them.
    """
    n = len(side.times)
    match = _SkyMatch(side.positions, np.flatnonzero(side.is_stim), cfg.stim_tolerance_pix * side.pixel_rad)
    moving = _moving_sky(side, spill, match, prod) if cfg.moving_sky else None
    names = [d.path.name for d in side.summaries]
    try:
        stim = stim_minus_background(SpilledMaps(spill, "slope", n, side.frame, nan_where=fatal),
                                     SpilledMaps(spill, "slope_err", n, side.frame),
                                     side.is_stim, side.times, match,
                                     min_snr=cfg.stim_min_snr, first_stim=cfg.first_stim,
                                     hits=side.hits, offsets=side.offsets, moving=moving)
    except NoStimError as exc:
        raise InputError(raw_dir, f"{exc}; the DCEs cannot be calibrated") from None
    for idx, why in stim.report["dropped"]:
        log.warning("%s: stim flash not used: %s", names[idx], why)
    unmatched = stim.report["neighbour_background"]
    if unmatched:
        log.info("%d flash(es) at pointings no sky DCE shares (the sky moves: a scan map?): "
                 "background from the sky their pixels saw in the DCEs around them (%d re-measured)",
                 len(unmatched), stim.report.get("moving_sky_flashes", 0))
    for idx, why in stim.report.get("rescaled", []):
        log.warning("%s: %s", names[idx], why)
    for lo, hi, size in stim.report.get("steps", []):
        log.warning("responsivity step of %+.2f%% between the flashes at MJD %.5f and %.5f (an "
                    "anneal?): the DCEs between carry its cost in _bunc and the RESP_STEP bit",
                    100 * size, lo, hi)
    log.info("%d of %d stim flashes usable; responsivity wander: %.2g per day (relative "
             "variance) and %.2g per flagged jump", stim.report["n_usable"],
             stim.report["n_flashes"], stim.wander.kappa, stim.wander.step_var)
    return stim


class _SkyMatch:
    """``match[i, js]`` of :func:`reprocess.stim.same_sky` for the stim DCEs ``i`` only: the rows
    the stim code reads (a (NFLASH, NDCE) table, computed ``block`` rows at a time, instead of
    (NDCE, NDCE) with an (NDCE, NDCE, 2) temporary)."""

    def __init__(self, positions: np.ndarray, rows: np.ndarray, tolerance_rad: float, block: int = 64):
        self._row = {int(i): k for k, i in enumerate(rows)}
        self._match = np.zeros((len(rows), len(positions)), dtype=bool)
        for b0 in range(0, len(rows), block):
            cos = np.einsum("ikc,jkc->ijk", positions[rows[b0:b0 + block]], positions)
            sep = np.arccos(np.clip(cos, -1.0, 1.0)).max(axis=-1)
            self._match[b0:b0 + block] = sep <= tolerance_rad

    def __getitem__(self, key):
        i, cols = key
        return self._match[self._row[int(i)]][cols]


def _moving_sky(side: _Side, spill: Spill, match, prod, n_side: int = 2) -> MovingSky:
    """For each flash no sky DCE shares the pointing of: where its pixel centres fall in the
    ``n_side`` nearest sky DCEs before and after it in time (``MovingSky``; the coordinates are
    spilled and read back when asked for)."""
    times = side.times
    sky = np.flatnonzero(~side.is_stim)
    sky = sky[np.argsort(times[sky], kind="stable")]
    ny, nx = side.frame
    yy, xx = np.mgrid[0:ny, 0:nx]
    pix = np.column_stack([xx.ravel(), yy.ravel()]).astype(float)
    neighbours = {}
    for i in np.flatnonzero(side.is_stim):
        if match[i, sky].any():
            continue
        world = side.wcs(i).all_pix2world(pix, 0)
        before = sky[times[sky] < times[i]][-n_side:]
        after = sky[times[sky] > times[i]][:n_side]
        js = [int(j) for j in np.concatenate([before, after])]
        for j in js:
            spill.put(("moving", int(i), j),
                      side.wcs(j).all_world2pix(world, 0)[:, ::-1].T.reshape(2, ny, nx))
        neighbours[int(i)] = js

    def coords(store, i):
        return [(j, store.get(("moving", i, j))) for j in neighbours[i]]
    return MovingSky(coords=SpilledMapping(spill, neighbours, coords), illum=prod.illum, dark=prod.dark)


def _sky_position(w: WCS, frame: WCS, shape):
    """Where a DCE pointed: unit vectors of the array centre and a corner (2, 3), the array
    centre's (x, y) pixel position in ``frame`` (the first DCE's WCS), and the pixel size (deg)."""
    ny, nx = shape
    pix = np.array([[(nx - 1) / 2.0, (ny - 1) / 2.0], [0.0, 0.0]])
    world = w.all_pix2world(pix, 0)
    ra, dec = np.radians(world).T
    unit = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    offset = frame.all_world2pix(world[:1], 0)[0]
    return unit, offset, np.sqrt(abs(np.linalg.det(w.pixel_scale_matrix)))


def _crval(dce):
    return float(dce.header["CRVAL1"]), float(dce.header["CRVAL2"])


class _WcsCache:
    """Celestial WCSs of DCEs; DCEs whose WCS cards differ only in CRVAL share one parse.

    Parsing a SIP header costs astropy ~7 ms; the DCEs of an AOR normally share
    everything but the pointing, so the first parse is copied and re-pointed.
    A DCE's WCS is thus its template (:meth:`key`) and its CRVAL: all the
    pipeline keeps of it.
    """

    def __init__(self):
        self._keys: dict = {}
        self._parsed: list = []

    def key(self, dce) -> int:
        """Index of the template of ``dce``'s WCS (parsed on first sight)."""
        cards = tuple(c for c in dce.card_images if c.startswith(_WCS_SHAPE_PREFIXES))
        k = self._keys.get(cards)
        if k is None:
            k = self._keys[cards] = len(self._parsed)
            self._parsed.append(celestial_wcs(dce))
        return k

    def pointed(self, key: int, crval) -> WCS:
        """Template ``key`` re-pointed at ``crval`` (deg)."""
        w = self._parsed[key].deepcopy()
        w.wcs.crval = [float(crval[0]), float(crval[1])]
        return w

    def __call__(self, dce) -> WCS:
        return self.pointed(self.key(dce), _crval(dce))


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


def _write_ramps(path: Path, side: _Side, spill: Spill, stim, prod, cfg) -> None:
    """Per-DCE slopes, errors, jumps and the stim responses (into the staging folder), written
    from the spill without holding the file (:mod:`.ramps_h5`)."""
    head = {"calid": prod.calid, "software": software(), "jump_threshold": cfg.jump_threshold,
            "false_jump_rate": false_jump_rate(cfg.jump_threshold)}
    dces = [{"stem": d.stem, "i": i, "attrs": {"stim": d.stim, "mjd_mid": d.mjd_mid, "mjd_slope": t,
                                               "nramps": d.nramps}}
            for i, (d, t) in enumerate(zip(side.summaries, side.times))]
    table = {"t": stim.t, "value": stim.value, "err": stim.err, "attrs": {
        "kappa_per_day": stim.wander.kappa, "step_var_per_jump": stim.wander.step_var,
        "n_flashes": stim.report["n_flashes"],
        "dropped": "\n".join(f"{side.summaries[i].stem}: {why}" for i, why in stim.report["dropped"])}}
    write_ramps_file(path, spill, head, dces, table)
