"""Simulate one observation (AOR; photometry or scan map, one band): raw DCE files plus ``truth.h5``.

The three arrays of one AOR (``mips simulate --band all``, :func:`simulate_aor`) are three such
simulations, one per array's configuration (:func:`mipssim.config.aor_configs`: one seed and
sky, each array's own detector noise and, in a scan map, focal-plane offset), merged into one
folder and committed at once.  Why not one loop over the arrays' DCEs: the arrays share nothing
at the detector level (their noise streams are independent and their state carries apart), so
simulating them one after another is exact, keeps every single-array path as it was, and the
parallel chunking applies to each.

``simulate(cfg, out_dir)`` walks the DCE plan: render the sky through the
DCE's WCS, add the stim flash and the dark, run the read-by-read detector
physics, write the raw file and record the truth.  The result only depends on
``cfg`` (seed included): the same configuration gives bit-identical files.
Each DCE's noise comes from its own per-effect streams (:mod:`.streams`), so
what happens in one DCE never moves another's noise.

The plan is cut into chunks of consecutive DCEs (``chunk_dces``), which
``workers`` processes (or a dask.distributed cluster) simulate in parallel
(:mod:`.parallel`).  A chunk needs only the configuration, its DCEs' plans and
the detector state the DCEs before it leave -- the cosmic-ray responsivity
excess, the transient adaptation, the 24 um latents -- which a state-only pass
over the plan works out exactly, without rendering ramps (:mod:`.carry`); so
the files do not depend on the worker count or the chunk size.  Each chunk
writes its raw files as it goes and its truth into its own HDF5 file, which the
parent copies into ``truth.h5`` in DCE order as soon as the chunks before are
in: memory is bounded by a chunk whatever the number of DCEs.  What every DCE
shares (detector, scene, drift, common steps, anneals, header templates) is
made from the configuration alone in each process (``_GeAor``, ``_SiAor``).

Besides the contract's datasets, each truth ``/dce/<name>`` group carries the
attributes validation needs to score stim tracking: ``t_mid_s`` (mean time of
the read intervals over which ``responsivity`` is averaged, s since the AOR
start), ``stim_factor`` (stim brightness multiplier: 0 without a flash, 1
normally, ``first_stim_factor`` for the AOR's first flash) and
``pointing_offset_arcsec`` (true - planned pointing, east and north),
``header_error_arcsec`` and ``header_rotation_deg`` (the raw header's WCS minus
the true one: zero, the header is the true pointing, unless
``include_pointing_error``; :mod:`.pointing`) and ``true_crval_deg`` (the true
CRVAL).  ``/responsivity_steps`` lists the common responsivity steps (``t_s``,
``size``), empty unless ``resp_step_rate_per_hr``.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import shutil
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from astropy import __version__ as astropy_version
from astropy.time import Time

from calibration import si_as
from calibration.folders import transaction
from calibration.instrument import band_spec, ge_ramps_per_dce

from .anneal import anneal_times, initial_cr_excess
from .carry import GeCarry, SiCarry, ge_state_step, si_latent_dces, si_state_step
from .config import SimConfig, to_toml
from .detector import default_detector
from .ge_ga import STREAMS, CRState, DriftModel, StepModel, simulate_ramps
from .ge_transient import TransientModel, TransientState
from .parallel import run_chunks
from .pointing import plan_photometry
from .scan import plan_scan
from .scene import make_scene
from .si_as import default_si_detector, onboard_threshold, simulate_si_dce
from .si_latents import SiLatents
from .streams import dce_streams, noise_seed
from .writers import FitsImage, TruthWriter, card, raw_name, write_hdus

__all__ = ["simulate", "simulate_aor", "software_version"]

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def software_version() -> str:
    """Version string of this toolkit (cached: reading the package metadata costs ~2 ms)."""
    try:
        return f"mips-toolkit {version('mips-toolkit')}"
    except PackageNotFoundError:
        return "mips-toolkit (not installed)"


def _ramp_starts(band: int, nreads: int) -> np.ndarray:
    """First read of each ramp: equal ramps, two at 160 um for 10 MIPS-s DCEs (the shared rule)."""
    starts = np.zeros(nreads, dtype=bool)
    starts[::nreads // ge_ramps_per_dce(band, nreads)] = True
    return starts


class RawHeaders:
    """Header cards of an AOR's raw files, rendered as 80-character card images.

    Why not an ``astropy.io.fits.Header`` per DCE: building one card by card
    cost ~15 ms per DCE (astropy looks its configuration up for every card),
    more than the read-by-read physics of a scan-map DCE.  The cards are listed
    once, in :meth:`cards` (keyword, value, comment, in file order), and
    formatted by :func:`.writers.card` exactly as astropy formats them; what
    is the same for every DCE of the AOR (the software version, the provenance
    HISTORY, the WCS cards of each template) is worked out once.
    """

    def __init__(self, cfg: SimConfig, spec):
        self.cfg, self.spec = cfg, spec
        self._creator = software_version()
        self._history = card("HISTORY", _provenance(cfg))   # astropy continues it on further cards
        self._wcs: dict[int, tuple] = {}   # id(template) -> (template, its (keyword, value, comment))

    def cards(self, plan, nreads: int, nramps: int, mjd: float, date_obs: str, *,
              bunit: tuple[str, str] = ("DN", ""), extra: tuple = ()) -> list[tuple]:
        """The non-commentary cards of DCE ``plan``'s raw header, in file order.

        ``date_obs`` is ``Time(mjd, format="mjd").isot`` (worked out for all DCEs at once by
        :func:`_dates`); ``bunit`` the BUNIT value and comment; ``extra`` cards go after SIMSEED.
        """
        cfg, spec = self.cfg, self.spec
        scan = cfg.mode == "scan"
        out = [("TELESCOP", "Spitzer", ""), ("INSTRUME", "MIPS", ""),
               ("CHNLNUM", spec.chnlnum, "1=24um, 2=70um, 3=160um"),
               ("AORKEY", cfg.aorkey, "AOR key"),
               ("EXPID", plan.expid, "exposure id"),
               ("DCENUM", plan.dcenum, "DCE number within the exposure"),
               ("AOT_TYPE", "MipsScan" if scan else "MipsPhot", "observation template"),
               ("EXPTYPE", "scn" if scan else "pht", "exposure type"),
               ("FOVNAME", f"MIPS_{cfg.band}um_default_small_FOV1", ""),
               ("SAMPTIME", spec.read_time_s, "[s] time between reads"),
               ("EXPTIME", nreads * spec.read_time_s, "[s] effective integration time"),
               ("NRAMPS", nramps, "ramps (resets) in this DCE"),
               ("MJD_OBS", mjd, "[d] MJD at DCE start"),
               ("DATE_OBS", date_obs, "UTC at DCE start"),
               ("STIMFLSH", bool(plan.stim), "T if the stim flash is on in this DCE"),
               ("CSM_PRED", plan.csm_arcsec, "[arcsec] scan-mirror offset along array y")]
        if scan:
            out += _scan_cards(cfg, plan)
        out.append(("BUNIT",) + tuple(bunit))
        out += self._wcs_cards(plan)
        out += [("ORIGIN", "mipssim", ""), ("CREATOR", self._creator, ""),
                ("SIMSEED", cfg.seed, "mipssim seed")]
        return out + list(extra)

    def images(self, *args, **kwargs) -> list[str]:
        """Every card image of the header (:meth:`cards`, then the provenance HISTORY)."""
        return [card(*c) for c in self.cards(*args, **kwargs)] + [self._history]

    def _wcs_cards(self, plan) -> list[tuple]:
        """The WCS cards: the plan's template (read once per template), CRVAL its reported
        pointing (the true one unless ``include_pointing_error``)."""
        entry = self._wcs.get(id(plan.wcs_template))
        if entry is None or entry[0] is not plan.wcs_template:
            entry = self._wcs[id(plan.wcs_template)] = (
                plan.wcs_template, [(c.keyword, c.value, c.comment) for c in plan.wcs_template.cards])
        reported = plan.header_cards      # CRVAL (and CD, PA with a rotation error) as reported
        return [(k, reported.get(k, v), c) for k, v, c in entry[1]]


def _dates(cfg: SimConfig, plans) -> tuple[list[float], list[str]]:
    """MJD at each DCE's start and its UTC ISO time (one ``astropy.time.Time`` for the AOR:
    a Time per DCE costs ~0.3 ms, and erfa converts each element exactly as it would alone)."""
    mjds = [cfg.mjd_start + plan.t_start_s / 86400.0 for plan in plans]
    return mjds, [str(d) for d in Time(np.array(mjds), format="mjd").isot]


def _scan_cards(cfg: SimConfig, plan) -> list[tuple]:
    """Scan-map keywords (names UNCONFIRMED [mips-facts 6.3]): rate, leg, mirror ramp, smear."""
    return [("SCANRATE", abs(plan.scan_rate_arcsec_s), f"[arcsec/s] telescope scan rate ({cfg.scan_rate})"),
            ("SCANDIR", 1 if plan.scan_rate_arcsec_s >= 0 else -1, "scan along +1/-1 array y axis"),
            ("SCANLEG", plan.scan_leg, "scan leg (0-based)"),
            ("CSM_RAMP", plan.csm_ramp_arcsec, "[arcsec] mirror sweep over the DCE, array y"),
            ("SMEAR1", plan.smear_arcsec[0], "[arcsec] residual sky trail over the DCE, east"),
            ("SMEAR2", plan.smear_arcsec[1], "[arcsec] residual sky trail over the DCE, north")]


def _provenance(cfg: SimConfig) -> str:
    """One line of provenance: software and package versions, seed, and the configuration's digest."""
    digest = hashlib.sha1(to_toml(cfg).encode()).hexdigest()
    return (f"mipssim: {software_version()}, numpy {np.__version__}, astropy {astropy_version}, "
            f"seed {cfg.seed}, configuration sha1 {digest} (its TOML text is the 'config' "
            f"attribute of truth.h5)")


DEFAULT_CHUNK_DCES = 64     # DCEs per chunk unless told: ~0.5 s of 70 um work, a few MB at 24 um


def simulate(cfg: SimConfig, out_dir: str | Path, *, overwrite: bool = False,
             progress=None, workers: int = 1, chunk_dces: int | None = None, client=None) -> Path:
    """Simulate the observation ``cfg`` into ``out_dir`` (``raw/`` and ``truth.h5``).

    Parameters
    ----------
    cfg : SimConfig
    out_dir : path
        Created if needed; refuses to replace an existing observation unless ``overwrite``.
    progress : callable, optional
        Called as ``progress(done, total)`` after each DCE (after each chunk with several
        workers).
    workers : int
        Processes that simulate chunks of DCEs in parallel (:func:`mipssim.parallel.run_chunks`).
    chunk_dces : int, optional
        DCEs per chunk (default ``DEFAULT_CHUNK_DCES``).
    client : dask.distributed.Client, optional
        Run the chunks on this cluster instead (its workers must see ``out_dir``).

    Returns
    -------
    Path of ``out_dir``.

    Notes
    -----
    The files do not depend on ``workers``, ``chunk_dces`` or ``client``: every DCE's
    noise comes from its own streams and each chunk starts from the exact state the
    DCEs before it leave (:mod:`.carry`).  Memory is bounded by a DCE, not by the
    observation: raw files are written as each DCE is simulated, and the truth as
    per-chunk HDF5 files (streamed to disk, :class:`.writers.TruthWriter`) that the
    parent copies into ``truth.h5`` in DCE order.

    The observation is simulated into a staging folder inside ``out_dir`` and
    committed as a whole (:func:`calibration.folders.transaction`): ``raw/``
    and ``truth.h5`` replace the old ones together and an old ``bcd/`` (products
    of the old raw files) is removed, so a killed run leaves the old
    observation or the new one, never a mixture.  The folder is locked for the
    run: a second writer (simulate or reprocess) is refused.
    """
    for name, value in (("workers", workers), ("chunk_dces", chunk_dces)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
    final = Path(out_dir)
    with transaction(final, "observation", replace=("raw", "truth.h5", "bcd"), overwrite=overwrite,
                     what="an observation", create=True) as stage:
        _simulate_into(cfg, stage, progress, workers=workers, chunk_dces=chunk_dces, client=client)
    return final


def simulate_aor(cfgs: list[SimConfig], out_dir: str | Path, *, overwrite: bool = False,
                 progress=None, workers: int = 1, chunk_dces: int | None = None, client=None) -> Path:
    """Simulate the arrays ``cfgs`` of one AOR (``mips simulate --band all``) into one folder.

    Parameters
    ----------
    cfgs : list of SimConfig
        One per array, as :func:`mipssim.config.aor_configs` makes them: one AORKEY,
        seed and scene (``scene_band``), each array its own ``noise_seed``.
    out_dir, overwrite, workers, chunk_dces, client
        As :func:`simulate` (per array).
    progress : callable, optional
        ``progress(done, total)`` over the DCEs of all arrays.

    Returns
    -------
    Path of ``out_dir``.

    Notes
    -----
    Each array is simulated by :func:`simulate`'s own code into a folder of the one
    staging folder, then merged: the raw files (``SPITZER_M1/M2/M3_...``) into ``raw/``,
    the truth into one ``truth.h5`` (:meth:`.writers.TruthWriter.add_array_truth`):
    ``/dce`` of every array, one ``/sources``, each array's AOR-level arrays and its
    configuration under ``/bands/<band>``; root attributes ``seed``, ``config`` (the
    scene band's array), ``software``, ``bands`` and ``scene_band``.  Committed as a
    whole like a single array; a single-array observation is not changed by any of this.
    """
    bands = [cfg.band for cfg in cfgs]
    if len(set(bands)) != len(bands) or len({(c.seed, c.aorkey, c.mode) for c in cfgs}) != 1:
        raise ValueError("the arrays of one AOR need distinct bands and one seed, AORKEY and mode")
    scene_band = cfgs[0].scene_band
    if scene_band is None or any(c.scene_band != scene_band for c in cfgs):
        raise ValueError("the arrays of one AOR need one scene_band (mipssim.config.aor_configs)")
    final = Path(out_dir)
    with transaction(final, "observation", replace=("raw", "truth.h5", "bcd"), overwrite=overwrite,
                     what="an observation", create=True) as stage:
        raw = stage / "raw"
        raw.mkdir()
        main = next(c for c in cfgs if c.band == scene_band) if scene_band in bands else cfgs[0]
        truth = TruthWriter(stage / "truth.h5", seed=main.seed, config_toml=to_toml(main),
                            software=software_version())
        try:
            truth.add_attrs(bands=np.array(bands), scene_band=scene_band)
            totals = [len(_plans(c)) for c in cfgs]
            for k, cfg in enumerate(cfgs):
                sub = stage / f"band{cfg.band}"
                sub.mkdir()
                _simulate_into(cfg, sub, _offset_progress(progress, sum(totals[:k]), sum(totals)),
                               workers=workers, chunk_dces=chunk_dces, client=client)
                for path in sorted((sub / "raw").iterdir()):
                    path.rename(raw / path.name)
                truth.add_array_truth(sub / "truth.h5", cfg.band)
                shutil.rmtree(sub)
        except BaseException:
            truth.abort()
            raise
        truth.close()
    return final


def _plans(cfg: SimConfig) -> list:
    """The DCE plan of ``cfg`` (scan map or photometry)."""
    return plan_scan(cfg) if cfg.mode == "scan" else plan_photometry(cfg)


def _offset_progress(progress, before: int, total: int):
    """``progress`` of one array's DCEs as part of all arrays' (None stays None)."""
    if progress is None:
        return None
    return lambda done, _n: progress(before + done, total)


def _simulate_into(cfg: SimConfig, out: Path, progress, *, workers: int = 1,
                   chunk_dces: int | None = None, client=None) -> Path:
    """Simulate ``cfg`` into the empty (staging) folder ``out``; see :func:`simulate`."""
    raw_dir = out / "raw"
    raw_dir.mkdir()
    plans = _plans(cfg)
    aor = _make_aor(cfg, plans)
    step = chunk_dces or DEFAULT_CHUNK_DCES
    bounds = [(a, min(a + step, len(plans))) for a in range(0, len(plans), step)]
    chunks = [_Chunk(cfg=cfg, plans=plans[a:b], factors=aor.factors[a:b], start=None, raw_dir=raw_dir,
                     part=out / f"truth.part-{k:05d}.h5", aor_args=aor.args)
              for k, (a, b) in enumerate(bounds)]
    truth = TruthWriter(out / "truth.h5", seed=cfg.seed, config_toml=to_toml(cfg),
                        software=software_version())
    merged = _TruthMerge(truth, aor, chunks)
    try:
        truth.add_sources(aor.scene.sources)
        if workers == 1 and client is None:       # in order, each chunk from the last one's state
            carry = aor.initial_carry()
            for k, chunk in enumerate(chunks):
                carry = _simulate_chunk(chunk, carry, aor=aor, progress=progress, total=len(plans))
                merged.finished(k)
        else:
            for chunk, start in zip(chunks, _start_states(aor, plans, bounds)):
                chunk.start = start

            def finished(k: int, n_dce: int) -> None:
                merged.finished(k)
                if progress is not None:
                    progress(merged.n_dce, len(plans))
            run_chunks(_chunk_task, chunks, workers=workers, client=client, on_result=finished)
        aor.add_truth(truth)
    except BaseException:
        truth.abort()
        raise
    finally:
        for chunk in chunks:
            chunk.part.unlink(missing_ok=True)
    truth.close()
    log.info("simulated %d DCEs of band %d into %s", len(plans), cfg.band, out.parent)
    return out


class _TruthMerge:
    """Copies finished chunks' truth into ``truth.h5`` in DCE order, as soon as each chunk and all
    those before it are done (while later chunks still run), deleting each chunk's file."""

    def __init__(self, truth: TruthWriter, aor, chunks):
        self.truth, self.aor, self.chunks = truth, aor, chunks
        self.done: set[int] = set()
        self.next = 0            # the first chunk not yet copied
        self.n_dce = 0           # DCEs of the finished chunks

    def finished(self, k: int) -> None:
        self.done.add(k)
        self.n_dce += len(self.chunks[k].plans)
        while self.next in self.done:
            chunk = self.chunks[self.next]
            self.truth.add_part(chunk.part, [self.aor.dce_name(plan) for plan in chunk.plans])
            chunk.part.unlink()
            self.next += 1


@dataclass
class _Chunk:
    """A run of consecutive DCEs to simulate, and where their files go."""

    cfg: SimConfig
    plans: list
    factors: np.ndarray          # stim brightness per DCE (:func:`stim_factors`)
    start: object                # the state the DCEs before leave (:mod:`.carry`); None: given
    raw_dir: Path
    part: Path                   # the chunk's truth, copied into truth.h5 by the parent
    aor_args: tuple              # what the AOR context needs besides cfg (:func:`_make_aor`)


def _simulate_chunk(chunk: _Chunk, carry, *, aor=None, progress=None, total: int = 0):
    """Simulate ``chunk`` from state ``carry``; returns the state its last DCE leaves."""
    aor = aor or _cached_aor(chunk.cfg, chunk.aor_args)
    carry = aor.working_state(carry)
    mjds, dates = _dates(chunk.cfg, chunk.plans)
    truth = TruthWriter(chunk.part)
    try:
        for i, plan in enumerate(chunk.plans):
            aor.simulate_dce(plan, chunk.factors[i], carry, chunk.raw_dir, truth, mjds[i], dates[i])
            if progress is not None:
                progress(plan.index + 1, total)
    except BaseException:
        truth.abort()
        raise
    truth.close()
    return carry


def _chunk_task(chunk: _Chunk) -> int:
    """One chunk in a worker process (from its start snapshot); returns its number of DCEs."""
    _simulate_chunk(chunk, chunk.start)
    return len(chunk.plans)


_AORS: dict = {}


def _cached_aor(cfg: SimConfig, args: tuple):
    """The AOR context of a worker process, built once per observation (scene, detector...)."""
    key = (to_toml(cfg), args)
    if key not in _AORS:
        _AORS.clear()
        _AORS[key] = _make_aor(cfg, None, args)
    return _AORS[key]


def _start_states(aor, plans, bounds) -> list:
    """The state at each chunk's start, from one state-only pass over the plan (:mod:`.carry`)."""
    carry = aor.initial_carry()
    render = si_latent_dces(aor, plans) if isinstance(aor, _SiAor) else None
    starts = []
    for k, (a, b) in enumerate(bounds):
        starts.append(carry.copy())
        if k + 1 == len(bounds):
            break
        for i in range(a, b):
            if render is None:
                ge_state_step(aor, carry, plans[i], aor.factors[i])
            else:
                si_state_step(aor, carry, plans[i], bool(render[i]))
    return starts


def _make_aor(cfg: SimConfig, plans, args: tuple | None = None):
    """The AOR context of ``cfg`` (``plans``, or ``args`` from a parent that had them)."""
    cls = _SiAor if cfg.band == 24 else _GeAor
    return cls(cfg, cls.args_of(cfg, plans) if args is None else args,
               factors=None if plans is None else stim_factors(cfg, plans))


def _aor_streams(cfg: SimConfig) -> dict:
    """The AOR-level generators (``SeedSequence(seed).spawn``, as :func:`.streams.effect_rng`):
    the scene's from ``seed``, the detector's (drift, steps, CR history) from :func:`noise_seed`."""
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(STREAMS))
    if noise_seed(cfg) != cfg.seed:
        own = np.random.SeedSequence(noise_seed(cfg)).spawn(len(STREAMS))
        seeds = [s if name == "scene" else o for name, s, o in zip(STREAMS, seeds, own)]
    return {name: np.random.default_rng(s) for name, s in zip(STREAMS, seeds)}


class _GeAor:
    """What every DCE of a Ge AOR shares, made from the configuration alone (so any process
    makes the same): detector, scene, drift, common steps, anneals, headers."""

    def __init__(self, cfg: SimConfig, args: tuple, *, factors=None):
        self.cfg, self.args = cfg, args
        self.nreads, duration_s = args
        self.detector = default_detector(cfg.band, read_noise_dn=cfg.read_noise_dn,
                                         excess_noise_dn2_s=cfg.excess_noise_dn2_s,
                                         dead_readout=cfg.include_dead_readout)
        self.spec = self.detector.spec
        self.ramp_starts = _ramp_starts(cfg.band, self.nreads)
        streams = _aor_streams(cfg)
        self.scene = make_scene(cfg, streams["scene"])
        self.drift = DriftModel.draw(streams["drift"], rms=cfg.drift_rms,
                                     min_period_s=cfg.drift_min_period_s,
                                     max_period_s=cfg.drift_max_period_s)
        self.steps = StepModel.draw(streams["resp_steps"], rate_per_hr=cfg.resp_step_rate_per_hr,
                                    size=cfg.resp_step_size, duration_s=duration_s)
        self.anneals = (anneal_times(since_anneal_s=cfg.t_since_anneal_s,
                                     interval_s=cfg.anneal_interval_s, duration_s=duration_s)
                        if _cr_resp_on(cfg) and cfg.include_anneals else np.zeros(0))
        det, spec = self.detector, self.spec
        self.dark_dn_s = det.dark_mips * spec.stim_dn_s * det.stim_pattern
        self.stim_dn_s = spec.stim_dn_s * det.stim_pattern
        self.flux_dn_s = spec.dn_s_per_mjysr * det.flat
        self.headers = RawHeaders(cfg, spec)
        self.factors = factors

    @staticmethod
    def args_of(cfg: SimConfig, plans) -> tuple:
        """(reads per DCE, AOR duration in s): what the context needs of the plan."""
        nreads = plans[0].nreads          # every Ge DCE of a plan has the same reads
        return nreads, plans[-1].t_start_s + nreads * band_spec(cfg.band).read_time_s

    def initial_carry(self) -> GeCarry:
        """The state at the AOR start: the CR excess built up since the last anneal."""
        rng = _aor_streams(self.cfg)["cr_history"]      # a fresh generator: the same state every call
        return GeCarry(cr=CRState(_initial_excess(self.cfg, self.spec.shape, rng)),
                       transient=_transient_state(self.cfg))

    def working_state(self, carry: GeCarry) -> GeCarry:
        return carry

    def dce_name(self, plan) -> str:
        return raw_name(self.spec.chnlnum, self.cfg.aorkey, plan.expid, plan.dcenum)[: -len("_raw.fits")]

    def read_times(self, plan) -> np.ndarray:
        """Times of the DCE's reads, s since the AOR start."""
        return plan.t_start_s + self.spec.read_time_s * np.arange(1, self.nreads + 1)

    def currents(self, plan, stim_factor: float):
        """The DCE's sky (MJy/sr) and its current at nominal responsivity (DN/s) before the DCE
        (no stim: what the pixels adapt to in the gap) and during it."""
        sky = self.scene.render(plan.wcs, self.spec.shape)
        current = self.flux_dn_s * sky
        if self.cfg.include_dark:
            current = current + self.dark_dn_s
        before = current * self.detector.responds
        if stim_factor:
            current = current + stim_factor * self.stim_dn_s
        return sky, before, current * self.detector.responds

    def simulate_dce(self, plan, stim_factor: float, carry: GeCarry, raw_dir: Path,
                     truth: TruthWriter, mjd: float, date_obs: str) -> None:
        """Simulate Ge DCE ``plan`` from state ``carry`` (updated): raw file and truth."""
        cfg, spec = self.cfg, self.spec
        t_reads = self.read_times(plan)
        gap_s = carry.enter(plan.t_start_s, t_reads[-1], tau_s=cfg.cr_resp_tau_s, anneals=self.anneals)
        sky, before, during = self.currents(plan, stim_factor)
        if carry.transient is not None:      # the gap before the DCE: the sky at its pointing, no stim
            carry.transient.relax(before, gap_s)
        ramp = simulate_ramps(during, t_reads_s=t_reads, ramp_starts=self.ramp_starts,
                              detector=self.detector, cfg=cfg, drift=self.drift, cr_state=carry.cr,
                              streams=dce_streams(noise_seed(cfg), plan.index), steps=self.steps,
                              transient=carry.transient)
        name = raw_name(spec.chnlnum, cfg.aorkey, plan.expid, plan.dcenum)
        cards = self.headers.images(plan, self.nreads, int(self.ramp_starts.sum()), mjd, date_obs)
        write_hdus(raw_dir / name, [FitsImage(cards, ramp.raw)])
        truth.add_dce(name[: -len("_raw.fits")], sky_mjysr=sky, slope_dn_s=ramp.slope_dn_s,
                      cr_events=ramp.cr_events, responsivity=ramp.responsivity,
                      attrs={"stim": bool(plan.stim), "t_start_s": plan.t_start_s,
                             "t_mid_s": ramp.t_mid_s, "mjd_obs": mjd,
                             "read_time_s": spec.read_time_s,
                             "gain_e_per_dn": cfg.gain_e_per_dn or spec.gain_e_per_dn,
                             **_dce_anomaly_attrs(plan, stim_factor)})

    def add_truth(self, truth: TruthWriter) -> None:
        """The AOR-level truth: anneals, common steps, the detector's maps."""
        det = self.detector
        truth.add_array("anneals", self.anneals,
                        units="t_s: anneal times, s since the AOR start (between DCEs)")
        truth.add_array("responsivity_steps", _step_table(self.steps), units="t_s: s since the AOR "
                        "start; size: fractional responsivity change, in force after t_s (all pixels)")
        truth.add_array("detector/read_noise_dn", det.read_noise)
        truth.add_array("detector/excess_noise_dn2_s", det.excess_noise)
        truth.add_array("detector/pmask", det.pmask)
        truth.add_array("detector/flat", det.flat)
        truth.add_array("detector/stim_pattern", det.stim_pattern)
        truth.add_array("detector/enl_beta", det.enl_beta)


def _cr_resp_on(cfg: SimConfig) -> bool:
    return cfg.include_cosmic_rays and cfg.include_cr_responsivity


def _initial_excess(cfg: SimConfig, shape, rng) -> np.ndarray:
    """The CR responsivity excess at the AOR start (:mod:`.anneal`), zero when the effect is off."""
    if not _cr_resp_on(cfg):
        return np.zeros(shape)
    since = cfg.t_since_anneal_s if cfg.include_anneals else np.inf
    return initial_cr_excess(rng, shape, since_anneal_s=since, rate_per_s=cfg.cr_rate_per_s,
                             mean_step=cfg.cr_resp_step, tau_s=cfg.cr_resp_tau_s)


def _transient_state(cfg: SimConfig) -> TransientState | None:
    """The pixels' adaptation state (:mod:`.ge_transient`), or None when the effect is off."""
    if not cfg.include_transient:
        return None
    return TransientState(TransientModel(
        prompt_fraction=cfg.transient_prompt_fraction, tau_ref_s=cfg.transient_tau_ref_s,
        ref_dn_s=cfg.transient_ref_dn_s, tau_power=cfg.transient_tau_power,
        hook_fraction=cfg.transient_hook_fraction, hook_tau_s=cfg.transient_hook_tau_s))


def stim_factors(cfg: SimConfig, plans) -> np.ndarray:
    """Stim brightness multiplier per DCE: 0 without a flash, 1 normally, ``first_stim_factor``
    for the AOR's first flash ("first stim bad" effect [HB 6.5 /68]) when ``include_first_stim``."""
    on = np.array([bool(p.stim) and cfg.include_stim for p in plans])
    factors = on.astype(float)
    if on.any() and cfg.include_first_stim:
        factors[np.argmax(on)] = cfg.first_stim_factor
    return factors


def _dce_anomaly_attrs(plan, stim_factor: float) -> dict:
    """Truth attributes every DCE carries: its stim factor, true - planned pointing, the header's
    pointing error (header - true, east/north arcsec, and rotation, deg) and true CRVAL; in a scan
    map also its leg, signed rate along the array's y axis and residual trail (not rendered yet)."""
    attrs = {"stim_factor": float(stim_factor),
             "pointing_offset_arcsec": np.asarray(plan.pointing_offset_arcsec, dtype=float),
             "header_error_arcsec": np.asarray(plan.header_error_arcsec, dtype=float),
             "header_rotation_deg": float(plan.header_rotation_deg),
             "true_crval_deg": np.asarray(plan.crval, dtype=float)}
    if plan.scan_leg is not None:
        attrs.update(scan_leg=int(plan.scan_leg), scan_rate_arcsec_s=float(plan.scan_rate_arcsec_s),
                     smear_arcsec=np.asarray(plan.smear_arcsec, dtype=float))
    return attrs


def _step_table(steps: StepModel) -> np.ndarray:
    table = np.zeros(len(steps.t_s), dtype=[("t_s", "f8"), ("size", "f8")])
    table["t_s"], table["size"] = steps.t_s, steps.size
    return table


class _SiAor:
    """What every DCE of a 24 um AOR shares: detector, scene, headers."""

    def __init__(self, cfg: SimConfig, args: tuple, *, factors=None):
        self.cfg, self.args = cfg, args
        self.detector = default_si_detector(cfg)
        self.spec = self.detector.spec
        self.scene = make_scene(cfg, _aor_streams(cfg)["scene"])
        self.headers = RawHeaders(cfg, self.spec)
        self.factors = factors
        self._spots: dict[float, np.ndarray] = {}

    @staticmethod
    def args_of(cfg: SimConfig, plans) -> tuple:
        return ()

    def initial_carry(self) -> SiCarry:
        return SiCarry(latents=SiLatents(self.cfg, self.spec.shape))

    def working_state(self, carry: SiCarry) -> SiCarry:
        """A snapshot (:meth:`SiCarry.copy`) made into maps."""
        return carry.restore(self.cfg, self.spec.shape)

    def dce_name(self, plan) -> str:
        return raw_name(self.spec.chnlnum, self.cfg.aorkey, plan.expid, plan.dcenum)[: -len("_raw.fits")]

    def mid_time(self, plan) -> float:
        return plan.t_start_s + 0.5 * plan.nreads * self.spec.read_time_s

    def signal(self, plan):
        """Sky (MJy/sr), first-frame factor, photocurrent and dark (DN/s) of DCE ``plan``."""
        cfg, det = self.cfg, self.detector
        sky = self.scene.render(plan.wcs, self.spec.shape)
        ff = (si_as.first_frame_factor(plan.dcenum, cfg.first_frame_factors)
              if cfg.include_first_frame else 1.0)
        spots = self._spots.get(plan.csm_arcsec)
        if spots is None:                          # a deterministic map per mirror position
            spots = self._spots[plan.csm_arcsec] = det.spot_map(plan.csm_arcsec, include=cfg.include_spots)
        photo = ff * det.spec.dn_s_per_mjysr * det.gainflat * spots * sky
        photo = np.where(det.pmask != 0, 0.0, photo)    # bad (dead) pixels collect no photocurrent
        dark = (det.dark(plan.dcenum, cfg.jailbar_factors, include_jailbar=cfg.include_jailbar)
                if cfg.include_dark else 0.0)
        return sky, ff, photo, dark

    def simulate_dce(self, plan, stim_factor: float, carry: SiCarry, raw_dir: Path,
                     truth: TruthWriter, mjd: float, date_obs: str) -> None:
        """The 24 um DCE ``plan`` from ``carry`` (updated): first-frame deficit, spots, dark,
        latents, then the detector; raw file and truth."""
        cfg, spec = self.cfg, self.spec
        t_mid = self.mid_time(plan)
        carry.enter(t_mid)
        latents = carry.latents
        sky, ff, photo, dark = self.signal(plan)
        signal = latents.signal(photo, dark)
        dce = simulate_si_dce(signal, nreads=plan.nreads, detector=self.detector, cfg=cfg,
                              streams=dce_streams(noise_seed(cfg), plan.index))
        latent_now = latents.short.copy()
        recorded = {"dark_latent_frac": latents.dark.copy(), "long_latent_dn_s": latents.long.copy()}
        latents.update(photo)
        name = raw_name(spec.chnlnum, cfg.aorkey, plan.expid, plan.dcenum)
        cards = self.headers.images(
            plan, plan.nreads, 1, mjd, date_obs,
            bunit=("DN/SAMPTIME", "plane 1 slope; plane 2 read2 - read1 (DN)"),
            extra=(("NREADS", plan.nreads, "samples in the on-board slope fit"),
                   ("RDOUTMOD", "SUR", "readout mode"),
                   ("SATTHDIF", onboard_threshold(plan.nreads, spec), "[DN/SAMPTIME] difference threshold")))
        images = [FitsImage(cards, dce.planes)]
        if cfg.engineering_ramps:
            images.append(FitsImage((), dce.ramp, extname="RAMP"))
        write_hdus(raw_dir / name, images)
        stem = name[: -len("_raw.fits")]
        truth.add_dce(stem, sky_mjysr=sky, slope_dn_s=signal,
                      cr_events=dce.cr_events, responsivity=np.full(spec.shape, ff),
                      attrs={"stim": False, "t_start_s": plan.t_start_s, "t_mid_s": t_mid,
                             "mjd_obs": mjd, "read_time_s": spec.read_time_s, "nreads": plan.nreads,
                             "dcenum": plan.dcenum, "csm_arcsec": plan.csm_arcsec,
                             "gain_e_per_dn": cfg.gain_e_per_dn or spec.gain_e_per_dn,
                             **_dce_anomaly_attrs(plan, 0.0)})
        truth.add_array(f"dce/{stem}/latent_dn_s", latent_now)
        for key, value in recorded.items():      # only where a persistent latent exists
            if value.any():
                truth.add_array(f"dce/{stem}/{key}", value)

    def add_truth(self, truth: TruthWriter) -> None:
        det = self.detector
        truth.add_array("detector/read_noise_dn", det.read_noise)
        truth.add_array("detector/pmask", det.pmask)
        truth.add_array("detector/gainflat", det.gainflat)
