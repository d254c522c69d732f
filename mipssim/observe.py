"""Simulate one observation (AOR; photometry or scan map, one band): raw DCE files plus ``truth.h5``.

``simulate(cfg, out_dir)`` walks the DCE plan in time order: render the sky
through the DCE's WCS, add the stim flash and the dark, run the read-by-read
detector physics, write the raw file and record the truth.  The result only
depends on ``cfg`` (seed included): the same configuration gives
bit-identical files.  Each DCE's noise comes from its own per-effect streams
(:mod:`.streams`), so what happens in one DCE never moves another's noise.

Besides the contract's datasets, each truth ``/dce/<name>`` group carries the
attributes validation needs to score stim tracking: ``t_mid_s`` (mean time of
the read intervals over which ``responsivity`` is averaged, s since the AOR
start), ``stim_factor`` (stim brightness multiplier: 0 without a flash, 1
normally, ``first_stim_factor`` for the AOR's first flash) and
``pointing_offset_arcsec`` (true - planned pointing, east and north; the raw
header's WCS is the true pointing).  ``/responsivity_steps`` lists the common
responsivity steps (``t_s``, ``size``), empty unless ``resp_step_rate_per_hr``.
"""
from __future__ import annotations

import functools
import hashlib
import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from astropy import __version__ as astropy_version
from astropy.time import Time

from calibration.folders import transaction
from calibration import si_as
from calibration.instrument import ge_ramps_per_dce

from .anneal import anneal_times, initial_cr_excess
from .config import SimConfig, to_toml
from .detector import default_detector
from .ge_ga import STREAMS, CRState, DriftModel, StepModel, simulate_ramps
from .ge_transient import TransientModel, TransientState
from .pointing import plan_photometry
from .scan import plan_scan
from .scene import make_scene
from .si_as import default_si_detector, onboard_threshold, simulate_si_dce
from .si_latents import SiLatents
from .streams import dce_streams
from .writers import FitsImage, TruthWriter, card, raw_name, write_hdus

__all__ = ["simulate", "software_version"]

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
        """The WCS cards: the plan's template (read once per template), CRVAL its pointing."""
        entry = self._wcs.get(id(plan.wcs_template))
        if entry is None or entry[0] is not plan.wcs_template:
            entry = self._wcs[id(plan.wcs_template)] = (
                plan.wcs_template, [(c.keyword, c.value, c.comment) for c in plan.wcs_template.cards])
        crval = {"CRVAL1": float(plan.crval[0]), "CRVAL2": float(plan.crval[1])}
        return [(k, crval.get(k, v), c) for k, v, c in entry[1]]


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


def simulate(cfg: SimConfig, out_dir: str | Path, *, overwrite: bool = False,
             progress=None) -> Path:
    """Simulate the observation ``cfg`` into ``out_dir`` (``raw/`` and ``truth.h5``).

    Parameters
    ----------
    cfg : SimConfig
    out_dir : path
        Created if needed; refuses to replace an existing observation unless ``overwrite``.
    progress : callable, optional
        Called as ``progress(done, total)`` after each DCE.

    Returns
    -------
    Path of ``out_dir``.

    Notes
    -----
    The observation is simulated into a staging folder inside ``out_dir`` and
    committed as a whole (:func:`calibration.folders.transaction`): ``raw/``
    and ``truth.h5`` replace the old ones together and an old ``bcd/`` (products
    of the old raw files) is removed, so a killed run leaves the old
    observation or the new one, never a mixture.  The folder is locked for the
    run: a second writer (simulate or reprocess) is refused.
    """
    final = Path(out_dir)
    with transaction(final, "observation", replace=("raw", "truth.h5", "bcd"), overwrite=overwrite,
                     what="an observation", create=True) as stage:
        _simulate_into(cfg, stage, progress)
    return final


def _simulate_into(cfg: SimConfig, out: Path, progress) -> Path:
    """Simulate ``cfg`` into the empty (staging) folder ``out``; see :func:`simulate`."""
    raw_dir = out / "raw"
    raw_dir.mkdir()

    seeds = np.random.SeedSequence(cfg.seed).spawn(len(STREAMS))
    streams = {name: np.random.default_rng(s) for name, s in zip(STREAMS, seeds)}
    scene = make_scene(cfg, streams["scene"])
    drift = DriftModel.draw(streams["drift"], rms=cfg.drift_rms, min_period_s=cfg.drift_min_period_s,
                            max_period_s=cfg.drift_max_period_s)
    plans = plan_scan(cfg) if cfg.mode == "scan" else plan_photometry(cfg)
    truth = TruthWriter(out / "truth.h5", seed=cfg.seed, config_toml=to_toml(cfg),
                        software=software_version())
    run = _run_si if cfg.band == 24 else _run_ge
    try:
        truth.add_sources(scene.sources)
        run(cfg, plans, scene, drift, streams, raw_dir, truth, progress)
    except BaseException:
        truth.abort()
        raise
    truth.close()
    log.info("simulated %d DCEs of band %d into %s", len(plans), cfg.band, out.parent)
    return out


def _run_ge(cfg, plans, scene, drift, streams, raw_dir, truth, progress):
    """The Ge DCE loop (70, 160 um)."""
    detector = default_detector(cfg.band, read_noise_dn=cfg.read_noise_dn,
                                excess_noise_dn2_s=cfg.excess_noise_dn2_s,
                                dead_readout=cfg.include_dead_readout)
    spec = detector.spec
    nreads = plans[0].nreads          # every Ge DCE of a plan has the same reads
    starts = _ramp_starts(cfg.band, nreads)
    duration_s = plans[-1].t_start_s + nreads * spec.read_time_s
    cr_state, anneals = _cr_history(cfg, spec.shape, streams["cr_history"], duration_s)
    dark_dn_s = detector.dark_mips * spec.stim_dn_s * detector.stim_pattern
    stim_dn_s = spec.stim_dn_s * detector.stim_pattern
    flux_dn_s = spec.dn_s_per_mjysr * detector.flat
    steps = StepModel.draw(streams["resp_steps"], rate_per_hr=cfg.resp_step_rate_per_hr,
                           size=cfg.resp_step_size, duration_s=duration_s)
    factors = stim_factors(cfg, plans)
    transient = _transient_state(cfg)
    headers = RawHeaders(cfg, spec)
    mjds, dates = _dates(cfg, plans)
    nramps = int(starts.sum())
    prev_end, prev_start = 0.0, -np.inf
    for plan in plans:
        gap_s = plan.t_start_s - prev_end
        cr_state.relax(gap_s, cfg.cr_resp_tau_s)
        if np.any((anneals > prev_start) & (anneals <= plan.t_start_s)):
            cr_state.excess[:] = 0.0          # an anneal before this DCE empties the traps
        prev_start = plan.t_start_s
        t_reads = plan.t_start_s + spec.read_time_s * np.arange(1, nreads + 1)
        prev_end = t_reads[-1]
        sky = scene.render(plan.wcs, spec.shape)
        current = flux_dn_s * sky
        if cfg.include_dark:
            current = current + dark_dn_s
        if transient is not None:      # the gap before the DCE: the sky at its pointing, no stim
            transient.relax(current * detector.responds, gap_s)
        if factors[plan.index]:
            current = current + factors[plan.index] * stim_dn_s
        ramp = simulate_ramps(current * detector.responds, t_reads_s=t_reads, ramp_starts=starts,
                              detector=detector,
                              cfg=cfg, drift=drift, cr_state=cr_state,
                              streams=dce_streams(cfg.seed, plan.index), steps=steps,
                              transient=transient)
        mjd = mjds[plan.index]
        name = raw_name(spec.chnlnum, cfg.aorkey, plan.expid, plan.dcenum)
        cards = headers.images(plan, nreads, nramps, mjd, dates[plan.index])
        write_hdus(raw_dir / name, [FitsImage(cards, ramp.raw)])
        truth.add_dce(name[: -len("_raw.fits")], sky_mjysr=sky, slope_dn_s=ramp.slope_dn_s,
                      cr_events=ramp.cr_events, responsivity=ramp.responsivity,
                      attrs={"stim": bool(plan.stim), "t_start_s": plan.t_start_s,
                             "t_mid_s": ramp.t_mid_s, "mjd_obs": mjd,
                             "read_time_s": spec.read_time_s,
                             "gain_e_per_dn": cfg.gain_e_per_dn or spec.gain_e_per_dn,
                             **_dce_anomaly_attrs(plan, factors[plan.index])})
        if progress is not None:
            progress(plan.index + 1, len(plans))
    truth.add_array("anneals", anneals, units="t_s: anneal times, s since the AOR start (between DCEs)")
    truth.add_array("responsivity_steps", _step_table(steps), units="t_s: s since the AOR start; "
                    "size: fractional responsivity change, in force after t_s (all pixels)")
    truth.add_array("detector/read_noise_dn", detector.read_noise)
    truth.add_array("detector/excess_noise_dn2_s", detector.excess_noise)
    truth.add_array("detector/pmask", detector.pmask)
    truth.add_array("detector/flat", detector.flat)
    truth.add_array("detector/stim_pattern", detector.stim_pattern)
    truth.add_array("detector/enl_beta", detector.enl_beta)


def _transient_state(cfg: SimConfig) -> TransientState | None:
    """The pixels' adaptation state (:mod:`.ge_transient`), or None when the effect is off."""
    if not cfg.include_transient:
        return None
    return TransientState(TransientModel(
        prompt_fraction=cfg.transient_prompt_fraction, tau_ref_s=cfg.transient_tau_ref_s,
        ref_dn_s=cfg.transient_ref_dn_s, tau_power=cfg.transient_tau_power,
        hook_fraction=cfg.transient_hook_fraction, hook_tau_s=cfg.transient_hook_tau_s))


def _cr_history(cfg: SimConfig, shape, rng, duration_s: float):
    """The CR responsivity state at the AOR start and the anneal times inside it (:mod:`.anneal`)."""
    if not (cfg.include_cosmic_rays and cfg.include_cr_responsivity):
        return CRState(np.zeros(shape)), np.zeros(0)
    since = cfg.t_since_anneal_s if cfg.include_anneals else np.inf
    excess = initial_cr_excess(rng, shape, since_anneal_s=since, rate_per_s=cfg.cr_rate_per_s,
                               mean_step=cfg.cr_resp_step, tau_s=cfg.cr_resp_tau_s)
    anneals = (anneal_times(since_anneal_s=cfg.t_since_anneal_s, interval_s=cfg.anneal_interval_s,
                            duration_s=duration_s) if cfg.include_anneals else np.zeros(0))
    return CRState(excess), anneals


def stim_factors(cfg: SimConfig, plans) -> np.ndarray:
    """Stim brightness multiplier per DCE: 0 without a flash, 1 normally, ``first_stim_factor``
    for the AOR's first flash ("first stim bad" effect [HB 6.5 /68]) when ``include_first_stim``."""
    on = np.array([bool(p.stim) and cfg.include_stim for p in plans])
    factors = on.astype(float)
    if on.any() and cfg.include_first_stim:
        factors[np.argmax(on)] = cfg.first_stim_factor
    return factors


def _dce_anomaly_attrs(plan, stim_factor: float) -> dict:
    """Truth attributes every DCE carries: its stim factor and true - planned pointing; in a scan
    map also its leg, signed rate along the array's y axis and residual trail (not rendered yet)."""
    attrs = {"stim_factor": float(stim_factor),
             "pointing_offset_arcsec": np.asarray(plan.pointing_offset_arcsec, dtype=float)}
    if plan.scan_leg is not None:
        attrs.update(scan_leg=int(plan.scan_leg), scan_rate_arcsec_s=float(plan.scan_rate_arcsec_s),
                     smear_arcsec=np.asarray(plan.smear_arcsec, dtype=float))
    return attrs


def _step_table(steps: StepModel) -> np.ndarray:
    table = np.zeros(len(steps.t_s), dtype=[("t_s", "f8"), ("size", "f8")])
    table["t_s"], table["size"] = steps.t_s, steps.size
    return table


def _si_signal(cfg, det, plan, sky):
    """First-frame factor, photocurrent and dark (DN/s) of a 24 um DCE seeing ``sky``."""
    ff = (si_as.first_frame_factor(plan.dcenum, cfg.first_frame_factors)
          if cfg.include_first_frame else 1.0)
    spots = det.spot_map(plan.csm_arcsec, include=cfg.include_spots)
    photo = ff * det.spec.dn_s_per_mjysr * det.gainflat * spots * sky
    photo = np.where(det.pmask != 0, 0.0, photo)    # bad (dead) pixels collect no photocurrent
    dark = (det.dark(plan.dcenum, cfg.jailbar_factors, include_jailbar=cfg.include_jailbar)
            if cfg.include_dark else 0.0)
    return ff, photo, dark


def _run_si(cfg, plans, scene, drift, streams, raw_dir, truth, progress):
    """The 24 um DCE loop: first-frame deficit, spots, dark, latents, then the detector."""
    det = default_si_detector(cfg)
    spec = det.spec
    latents = SiLatents(cfg, spec.shape)
    headers = RawHeaders(cfg, spec)
    mjds, dates = _dates(cfg, plans)
    prev_mid = None
    for plan in plans:
        t_mid = plan.t_start_s + 0.5 * plan.nreads * spec.read_time_s
        if prev_mid is not None:
            latents.decay(t_mid - prev_mid)
        prev_mid = t_mid
        sky = scene.render(plan.wcs, spec.shape)
        ff, photo, dark = _si_signal(cfg, det, plan, sky)
        signal = latents.signal(photo, dark)
        dce = simulate_si_dce(signal, nreads=plan.nreads, detector=det, cfg=cfg,
                              streams=dce_streams(cfg.seed, plan.index))
        latent_now = latents.short.copy()
        recorded = {"dark_latent_frac": latents.dark.copy(), "long_latent_dn_s": latents.long.copy()}
        latents.update(photo)
        mjd = mjds[plan.index]
        name = raw_name(spec.chnlnum, cfg.aorkey, plan.expid, plan.dcenum)
        cards = headers.images(
            plan, plan.nreads, 1, mjd, dates[plan.index],
            bunit=("DN/SAMPTIME", "plane 1 slope; plane 2 read2 - read1 (DN)"),
            extra=(("NREADS", plan.nreads, "samples in the on-board slope fit"),
                   ("RDOUTMOD", "SUR", "readout mode"),
                   ("SATTHDIF", onboard_threshold(plan.nreads, spec), "[DN/SAMPTIME] difference threshold")))
        images = [FitsImage(cards, dce.planes)]
        if cfg.engineering_ramps:
            images.append(FitsImage((), dce.ramp, extname="RAMP"))
        write_hdus(raw_dir / name, images)
        truth.add_dce(name[: -len("_raw.fits")], sky_mjysr=sky, slope_dn_s=signal,
                      cr_events=dce.cr_events, responsivity=np.full(spec.shape, ff),
                      attrs={"stim": False, "t_start_s": plan.t_start_s, "t_mid_s": t_mid,
                             "mjd_obs": mjd, "read_time_s": spec.read_time_s, "nreads": plan.nreads,
                             "dcenum": plan.dcenum, "csm_arcsec": plan.csm_arcsec,
                             "gain_e_per_dn": cfg.gain_e_per_dn or spec.gain_e_per_dn,
                             **_dce_anomaly_attrs(plan, 0.0)})
        truth.add_array(f"dce/{name[: -len('_raw.fits')]}/latent_dn_s", latent_now)
        for key, value in recorded.items():      # only where a persistent latent exists
            if value.any():
                truth.add_array(f"dce/{name[: -len('_raw.fits')]}/{key}", value)
        if progress is not None:
            progress(plan.index + 1, len(plans))
    truth.add_array("detector/read_noise_dn", det.read_noise)
    truth.add_array("detector/pmask", det.pmask)
    truth.add_array("detector/gainflat", det.gainflat)
