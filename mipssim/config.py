"""Configuration of one simulated observation: defaults < TOML file < keyword overrides.

Every effect has an ``include_*`` switch; every number that no source
confirms has a documented default here (see ``shared/docs/mips-facts.md``).
The resolved configuration is written, as TOML text, into ``truth.h5`` and the
raw headers' provenance so a run can be repeated exactly.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration.configuration import ConfigError, check_ranges, is_number, read_toml, resolve

__all__ = ["AOR_BANDS", "FOCAL_PLANE_OFFSETS_ARCSEC", "SCAN_RATES", "SHARED_FIELDS", "SimConfig",
           "aor_configs", "load_config", "to_toml"]


@dataclass
class SimConfig:
    """All parameters of a simulated observation (photometry or scan map, one band)."""

    band: int = 70
    mode: str = "photometry"
    seed: int = 1
    aorkey: int = 12345678
    noise_seed: int | None = None      # seed of the detector's own random streams (noise, cosmic rays,
    #   drift, responsivity steps, CR history); None = seed.  The scene and the pointing jitter
    #   (one telescope, one scan mirror) always use seed.  A multi-array AOR gives each array its
    #   own (:func:`aor_configs`), so that the arrays' noise is independent
    scene_band: int | None = None      # None: the sky of this band alone.  24/70/160: the sky shared by
    #   the arrays of a multi-array AOR (mipssim/scene.py): the same sources whatever ``band``
    # --- observation plan
    n_dce: int = 240                   # DCEs in the AOR (stim DCEs included)
    exptime_mips_s: int = 10           # 3, 4 or 10 MIPS s [GeRT /4]
    overhead_s: float = 1.0            # s between DCEs (reset, mirror move); UNCONFIRMED
    stim_cycle: int = 6                # a stim flash every stim_cycle-th DCE ("stim cycle of 6" [IOC-246])
    ra_deg: float = 53.1
    dec_deg: float = -27.8
    pa_deg: float = 30.0
    mjd_start: float = 54000.0
    dither_pix: list = field(default_factory=lambda: [[0.0, 0.0], [0.5, 3.5], [-0.5, -3.5],
                                                     [2.5, 1.5], [-2.5, -1.5]])  # UNCONFIRMED pattern
    # --- scan map (mode = "scan"; mipssim/scan.py; n_dce is ignored, the legs fix the DCE count)
    scan_rate: str = "medium"          # "slow", "medium" or "fast" [aotintro]
    scan_rates_arcsec_s: list = field(default_factory=lambda: [1.7, 6.5, 26.2])
    #   telescope rate of the slow, medium and fast scans, arcsec/s; UNCONFIRMED: remembered values,
    #   not in any seen source (mips-facts 8.2); fast is in tension with the fast per-leg integration
    #   times [IOC-326 AOR] (see mipssim/scan.py)
    scan_legs: int = 16                # legs of the map (IOC-295 example: 16 legs of 30')
    scan_leg_arcmin: float = 30.0      # requested leg length, arcmin [IOC-295]
    scan_step_arcsec: float = 111.0    # cross-scan step between legs, arcsec [IOC-295]
    scan_exptime_mips_s: int = 4       # DCE length in scan mode, MIPS s: "1616 4-second DCEs per
    #                                    array" [IOC-295]; early-IOC fast scans used 3 [IOC-326]
    scan_flyback_s: float = 0.5        # between DCEs: mirror flyback and the second reset "0.5 s
    #                                    later" [HB 2.4.3 /14]; whether MIPS or real s UNCONFIRMED
    scan_overscan_arcmin: float = 21.5  # extra scanned length per leg (arrays displaced in-scan must
    #   all cover the leg; settling); UNCONFIRMED, DERIVED so that the IOC-295 map gives its 1616
    #   DCEs per array at the default medium rate (mipssim/scan.py)
    scan_turnaround_s: float = 46.0    # between legs, no DCEs; UNCONFIRMED, DERIVED from IOC-295's
    #   2.36 h for that map minus its DCEs and the 215 s slew overhead [HB 3.4.1 /37]
    scan_array_offset_arcsec: list | None = None  # [in-scan, cross-scan] offset of this array's
    #   centre from the boresight, arcsec, along the array's y and x axes (scan maps: each array sees
    #   its own part of the sky at a given time).  None = 0 (each band simulated alone); the
    #   multi-array AOR's defaults are FOCAL_PLANE_OFFSETS_ARCSEC
    scan_smear_fraction: float = 0.02  # residual sky motion during a DCE / scan rate (the mirror's
    #   ramp cancels the rest); UNCONFIRMED: IOC-326 saw "only a modest trailing"
    # --- scene (surface brightness in MJy/sr, fluxes in Jy at this band)
    n_sources: int = 6
    bright_source_jy: float | None = None   # an extra source of this flux at the target (e.g. droop tests)
    source_temperature_k: float | None = None  # every source at this blackbody temperature (a
    #                                            standard star: 3000); None draws one per source
    flux_min_jy: float = 0.05
    flux_max_jy: float = 2.0
    zodi_mjysr: float = 5.0            # UNCONFIRMED (smooth, ecliptic-dependent)
    cirrus_mjysr: float = 10.0         # mean cirrus; varies by +-cirrus_contrast over ~arcmin scales
    cirrus_contrast: float = 0.2
    blob_peak_mjysr: float = 20.0      # one extended Gaussian blob near the target
    blob_fwhm_arcsec: float = 60.0
    # --- detector (None = the band's default in calibration.instrument)
    read_noise_dn: float | None = None
    gain_e_per_dn: float | None = None
    excess_noise_dn2_s: float | None = None  # median density of the Ge excess (white current) noise,
    #                                          DN^2/s; None = the band's flight-anchored default
    # --- responsivity
    drift_rms: float = 0.02            # RMS fractional responsivity drift over the AOR; UNCONFIRMED
    drift_min_period_s: float = 600.0
    drift_max_period_s: float = 3600.0
    drift_pixel_spread: float = 0.2    # pixel-to-pixel spread of the drift amplitude (fraction)
    cr_rate_per_s: float = 1.0 / 35.0  # hits per pixel per second [HB 2.4.3 /14]
    cr_amp_median_dn: float = 2000.0   # log-normal hit amplitude; UNCONFIRMED (hit spectrum not public)
    cr_amp_sigma_ln: float = 1.0
    cr_resp_step: float = 0.003        # mean fractional responsivity rise per hit [IOC-2015]; UNCONFIRMED
    cr_resp_tau_s: float = 600.0       # relaxation time of that rise; UNCONFIRMED
    resp_step_rate_per_hr: float = 0.0  # occasional large common responsivity steps per hour: a
    resp_step_size: float = 0.02       # test knob for stim tracking (off); fractional size, random sign
    transient_prompt_fraction: float = 0.85  # Ge transient response (mipssim/ge_transient.py, off by
    transient_tau_ref_s: float = 3600.0      # default): prompt fraction of a small step; adaptation
    transient_ref_dn_s: float = 300.0        # time at the reference current (~70 um sky); tau scales
    transient_tau_power: float = 0.5         # as (ref / I)^power. All UNCONFIRMED [HB 2.3.3 /10]
    transient_hook_fraction: float = 0.10    # the hook: fraction of a (log) step lost again after the
    #   prompt response, before the slow rise [HB 2.3.3 /10, qualitative only]. UNCONFIRMED: no size
    #   found in the Handbook or IOC pages; 0.10 keeps the dip above the starting level (h < b) and
    #   smaller than the slow part (1 - b = 0.15), a modest dip as the Handbook's sketch (Fig. 2.12)
    transient_hook_tau_s: float = 10.0       # time of the hook (bulk dielectric relaxation), s.
    #   UNCONFIRMED: no number found; much shorter than the contacts' slow time (tens of min to hours)
    #   and longer than a read (0.13 s), so one 10 MIPS-s DCE: it acts within and between DCEs, the
    #   "fast time domain" the Ge observing modes were designed around
    anneal_interval_s: float = 10800.0  # Ge anneal cadence: 3 h pre-launch default [IOC-160], later
    #                                     tuned (UNCONFIRMED); anneals empty the CR responsivity excess
    t_since_anneal_s: float = 5400.0   # last anneal before the AOR start (UNCONFIRMED: mid-cycle); the
    #                                    excess has built up for this long (mipssim/anneal.py)
    # --- pointing and stim anomalies
    pointing_jitter_arcsec: float = 0.3  # RMS per axis (east, north) of each DCE's true - planned
    #   pointing, which the header WCS carries; UNCONFIRMED: reconstructed pointings always differ a
    #   little (scan-mirror repeatability, telescope jitter); 0.3" is the case issue 9 measured
    pointing_error_arcsec: float = 0.85  # RMS per axis (east, north) of each DCE's header - true
    #   pointing (the reconstruction error), drawn per DCE; off by default (include_pointing_error).
    #   0.85" = 1.2" 1-sigma radial / sqrt(2): the 24 um blind pointing [HB /59, anchors-postbcd 2.4;
    #   HB /53 says ~1.4"]; how it splits into per-DCE and per-AOR parts is UNCONFIRMED
    pointing_error_common_arcsec: float = 0.0  # RMS per axis of one header offset shared by all the
    #   AOR's DCEs (added to the per-DCE part); UNCONFIRMED, 0 by default
    pointing_error_rotation_deg: float = 0.0   # RMS of each DCE's header - true rotation about the
    #   reference pixel (position angle); UNCONFIRMED, 0 by default
    first_stim_factor: float = 1.05    # first stim flash of the AOR / the others ("first stim bad"
    #                                    effect [HB 6.5 /68]); size and sign UNCONFIRMED
    # --- effect switches (each has its own random stream)
    include_sources: bool = True
    include_background: bool = True
    include_poisson: bool = True
    include_read_noise: bool = True
    include_reset_noise: bool = True
    include_dark: bool = True
    include_drift: bool = True
    include_cosmic_rays: bool = True
    include_cr_responsivity: bool = True
    include_stim: bool = True
    include_nonlinearity: bool = True
    include_saturation: bool = True
    include_pointing_jitter: bool = True
    include_pointing_error: bool = False   # header WCS = true pointing + pointing_error_* (off: the
    #   header carries the true pointing, which the validation and mosaic-vs-truth figures assume)
    include_first_stim: bool = True
    include_resp_steps: bool = True
    include_excess_noise: bool = True
    include_dead_readout: bool = True  # 70 um side-A readout "4,4" (mipssim/detector.py DEAD_READOUT_70)
    include_anneals: bool = True       # off: never annealed, the CR excess starts in steady state
    include_transient: bool = False    # experimental: changes what extended vs point sources read
    include_leak: bool = True          # 160 um near-IR leak of hot sources (mipssim/scene.py)
    reset_noise_dn: float = 30.0       # kTC-like scatter of the reset level per DCE; UNCONFIRMED
    # --- Si:As 24 um (used when band = 24)
    engineering_ramps: bool = False    # also write the full ramp (extension RAMP) of every DCE
    first_dce_fewer_reads: int = 4     # DCENUM 0 is shorter [MIPS data-reduction overview]
    droop_coeff: float = 0.30          # offset / array-mean signal; UNCONFIRMED (IRS: 0.19-0.49)
    row_droop_coeff: float = 0.02      # offset / row-mean signal; UNCONFIRMED
    first_frame_factors: list = field(default_factory=lambda: [0.87, 0.98, 0.98])  # DCENUM 0,1,2
    read2_dn: float = 40.0             # read-2 deficit at the bottom row, DN; UNCONFIRMED
    read2_scale_rows: float = 12.0     # e-folding height of the read-2 deficit, rows; UNCONFIRMED
    latent_fraction: float = 0.008     # short-lived bright latent / source [HB 7.1 /73]
    latent_tau_s: float = 8.0          # its decay time ("seconds"); UNCONFIRMED
    latent_threshold_dn_s: float = 3000.0   # only signal above this leaves a latent; UNCONFIRMED
    dark_latent_depth: float = 0.015   # response deficit after a > 18-50 Jy source: 1-2 % [HB 7.1 /73]
    dark_latent_tau_s: float = 36000.0  # "~10 h" [HB 7.1 /73]
    dark_latent_threshold_dn_s: float = 2.6e5  # ~18 Jy at a source's peak pixel (mipssim/si_latents.py)
    long_latent_fraction: float = 0.005  # ~0.5 % of an extremely bright object [HB 7.1 /73]
    long_latent_tau_s: float = 259200.0  # "days": 3 d; UNCONFIRMED
    long_latent_threshold_dn_s: float = 1.0e6  # "extremely bright" (~70 Jy peak); UNCONFIRMED
    dark24_dn_s: float = 1.5           # [IOC-190D2/F]
    jailbar_factors: list = field(default_factory=lambda: [0.5, 0.5, 1.0, 1.75, 1.75])
    # readout-4 dark / others by DCENUM 0,1,2,3,>=4 [Jailbar report: low in the first two DCEs
    # (DCENUM 0-1), gone by the third (DCENUM 2), then ~75 % above the others]; 0.5 UNCONFIRMED
    spot_depth: float = 0.17           # POM spots 15-20 % deep, 3-4 px [FEAT]
    n_spots: int = 10
    include_droop: bool = True
    include_row_droop: bool = True
    include_first_frame: bool = True
    include_read2: bool = True
    include_latents: bool = True
    include_dark_latents: bool = True
    include_long_latents: bool = True
    include_spots: bool = True
    include_jailbar: bool = True

    def __post_init__(self):
        """Ranges and relations (types are checked by :func:`calibration.configuration.resolve`)."""
        if self.mode not in ("photometry", "scan"):
            raise ConfigError("mode", 'must be "photometry" or "scan"')
        if self.band not in (24, 70, 160):
            raise ConfigError("band", "must be 24, 70 or 160")
        if self.scene_band not in (None, 24, 70, 160):
            raise ConfigError("scene_band", "must be 24, 70 or 160 (or absent: the band's own sky)")
        if self.exptime_mips_s not in (3, 4, 10):
            raise ConfigError("exptime_mips_s", "must be 3, 4 or 10 (MIPS s)")
        for key, lowest in (("n_dce", 1), ("stim_cycle", 2), ("aorkey", 1)):
            if getattr(self, key) < lowest:
                raise ConfigError(key, f"must be >= {lowest}")
        check_ranges(self, positive=(
            "flux_min_jy", "flux_max_jy", "blob_fwhm_arcsec", "bright_source_jy", "gain_e_per_dn",
            "source_temperature_k", "transient_tau_ref_s", "transient_ref_dn_s", "transient_hook_tau_s",
            "drift_min_period_s", "drift_max_period_s", "cr_amp_median_dn", "cr_resp_tau_s",
            "read2_scale_rows", "latent_tau_s", "first_frame_factors", "jailbar_factors",
            "dark_latent_tau_s", "long_latent_tau_s"),
            nonnegative=(
            "seed", "noise_seed", "overhead_s", "n_sources", "zodi_mjysr", "cirrus_mjysr", "blob_peak_mjysr",
            "read_noise_dn", "excess_noise_dn2_s", "drift_rms", "drift_pixel_spread", "cr_rate_per_s",
            "cr_amp_sigma_ln", "cr_resp_step", "reset_noise_dn", "first_dce_fewer_reads", "droop_coeff",
            "row_droop_coeff", "read2_dn", "latent_threshold_dn_s", "dark24_dn_s", "n_spots",
            "dark_latent_threshold_dn_s", "long_latent_threshold_dn_s",
            "pointing_jitter_arcsec", "pointing_error_arcsec", "pointing_error_common_arcsec",
            "pointing_error_rotation_deg", "resp_step_rate_per_hr", "resp_step_size",
            "anneal_interval_s", "t_since_anneal_s", "transient_tau_power"),
            fraction=("cirrus_contrast", "spot_depth", "latent_fraction", "transient_prompt_fraction",
                      "transient_hook_fraction",
                      "dark_latent_depth", "long_latent_fraction"))
        if not self.first_stim_factor > 0:
            raise ConfigError("first_stim_factor", "must be > 0")
        if not 0 <= self.ra_deg < 360:
            raise ConfigError("ra_deg", "must be in [0, 360)")
        if not -90 <= self.dec_deg <= 90:
            raise ConfigError("dec_deg", "must be in [-90, 90]")
        if self.flux_min_jy > self.flux_max_jy:
            raise ConfigError("flux_min_jy", f"must not exceed flux_max_jy = {self.flux_max_jy}")
        if self.drift_min_period_s > self.drift_max_period_s:
            raise ConfigError("drift_min_period_s",
                              f"must not exceed drift_max_period_s = {self.drift_max_period_s}")
        self._check_scan()
        if not self.dither_pix or not all(isinstance(p, (list, tuple)) and len(p) == 2
                                          and all(map(is_number, p)) for p in self.dither_pix):
            raise ConfigError("dither_pix", "must be a non-empty array of [dx, dy] pairs (pixels)")

    def _check_scan(self) -> None:
        """Ranges of the scan-map parameters (checked in every mode: a file is valid or not)."""
        if self.scan_rate not in SCAN_RATES:
            raise ConfigError("scan_rate", f"must be one of {', '.join(SCAN_RATES)}")
        rates = self.scan_rates_arcsec_s
        if len(rates) != 3 or not all(is_number(r) and r > 0 for r in rates):
            raise ConfigError("scan_rates_arcsec_s",
                              "must be three positive rates (slow, medium, fast), arcsec/s")
        if self.scan_exptime_mips_s not in (3, 4):
            raise ConfigError("scan_exptime_mips_s", "must be 3 or 4 (MIPS s)")
        if self.scan_legs < 1:
            raise ConfigError("scan_legs", "must be >= 1")
        offset = self.scan_array_offset_arcsec
        if offset is not None and not (len(offset) == 2 and all(is_number(v) for v in offset)):
            raise ConfigError("scan_array_offset_arcsec", "must be [in-scan, cross-scan] (arcsec)")
        check_ranges(self, positive=("scan_leg_arcmin",),
                     nonnegative=("scan_step_arcsec", "scan_flyback_s", "scan_overscan_arcmin",
                                  "scan_turnaround_s"),
                     fraction=("scan_smear_fraction",))

    @property
    def scan_rate_arcsec_s(self) -> float:
        """Telescope scan rate of ``scan_rate``, arcsec/s."""
        return float(self.scan_rates_arcsec_s[SCAN_RATES.index(self.scan_rate)])


SCAN_RATES = ("slow", "medium", "fast")

# Band defaults that differ from the 70 um ones (applied before the file and the overrides)
BAND_DEFAULTS = {
    24: {"n_dce": 30, "stim_cycle": 1000, "zodi_mjysr": 40.0, "cirrus_mjysr": 0.5,
         "blob_peak_mjysr": 3.0, "blob_fwhm_arcsec": 20.0, "flux_min_jy": 0.005, "flux_max_jy": 0.5,
         "n_sources": 25, "cr_rate_per_s": 3e-4, "cr_amp_median_dn": 300.0,
         "dither_pix": [[dx, dy] for dx in (0.0, 20.5) for dy in (0.0, 5.5, -5.5, 11.0, -11.0,
                                                                  16.5, -16.5)]},
    160: {"zodi_mjysr": 2.0},
}


def load_config(path: str | Path | None = None, **overrides) -> SimConfig:
    """Band defaults, then the TOML file at ``path`` (if any), then ``overrides`` (None ignored)."""
    given = {**read_toml(path), **{k: v for k, v in overrides.items() if v is not None}}
    band = given.get("band", 70)         # a wrong type is named by resolve(), not here
    return resolve(SimConfig, path, overrides,
                   defaults=BAND_DEFAULTS.get(band if isinstance(band, int) else 70, {}))


AOR_BANDS = (24, 70, 160)
_CHNLNUM = {24: 1, 70: 2, 160: 3}

# What the arrays of one AOR share, taken from the scene band's configuration: the plan (mode,
# DCE count and length, target, roll, start), the sky's sources and the pointing jitter (one
# telescope and one scan mirror), and every scan_* parameter but the array's own offset.  The rest
# (detector, diffuse brightness in MJy/sr, stim cadence, dithers...) keeps each band's defaults.
SHARED_FIELDS = ("mode", "seed", "aorkey", "n_dce", "exptime_mips_s", "ra_deg", "dec_deg", "pa_deg",
                 "mjd_start", "n_sources", "flux_min_jy", "flux_max_jy", "source_temperature_k",
                 "bright_source_jy", "include_sources", "include_pointing_jitter",
                 "pointing_jitter_arcsec") + tuple(
    f.name for f in dataclasses.fields(SimConfig)
    if f.name.startswith("scan_") and f.name != "scan_array_offset_arcsec")

# Centre of each array relative to the boresight in a scan map, arcsec [in-scan (array y),
# cross-scan (array x)].  UNCONFIRMED: the arrays' relative placement is published only as a
# figure, its numbers not seen [mips-facts 1.5, ArrayGeom]; the default puts them one 24 um field
# (5.5') apart along the scan, 24 um leading, so that a leg's overscan (scan_overscan_arcmin)
# covers each array's displacement.  Photometry ignores it: the AOT puts the target on each array.
FOCAL_PLANE_OFFSETS_ARCSEC = {24: (330.0, 0.0), 70: (0.0, 0.0), 160: (-330.0, 0.0)}


def aor_configs(path: str | Path | None = None, *, scene_band: int = 70,
                **overrides) -> list[SimConfig]:
    """Configurations of the three arrays of one AOR (``--band all``): 24, 70, 160 um.

    Each is :func:`load_config` of its band (band defaults < file < ``overrides``), then
    :data:`SHARED_FIELDS` are those of ``scene_band``'s configuration, ``scene_band`` is set
    (the arrays see one sky, :func:`mipssim.scene.make_scene`), ``noise_seed`` is drawn from
    ``numpy.random.SeedSequence([seed, CHNLNUM])`` (independent detector noise per array,
    reproducible from the one seed), and in a scan map each array sits at its
    :data:`FOCAL_PLANE_OFFSETS_ARCSEC` unless the file or ``overrides`` give
    ``scan_array_offset_arcsec``.
    """
    if scene_band not in AOR_BANDS:
        raise ConfigError("scene_band", "must be 24, 70 or 160")
    overrides = {k: v for k, v in overrides.items() if k != "band"}
    base = load_config(path, **overrides, band=scene_band)
    shared = {name: getattr(base, name) for name in SHARED_FIELDS}
    out = []
    for band in AOR_BANDS:
        cfg = load_config(path, **overrides, band=band)
        noise = int(np.random.SeedSequence([base.seed, _CHNLNUM[band]]).generate_state(1)[0])
        changes = {**shared, "scene_band": scene_band, "noise_seed": noise}
        if base.mode == "scan" and cfg.scan_array_offset_arcsec is None:
            changes["scan_array_offset_arcsec"] = list(FOCAL_PLANE_OFFSETS_ARCSEC[band])
        out.append(dataclasses.replace(cfg, **changes))
    return out


def to_toml(cfg: SimConfig) -> str:
    """The resolved configuration as TOML text (None values omitted).

    The ``scan_*`` parameters are written only for a scan map: they have no
    effect on a photometry observation, whose TOML text (and hence the
    configuration digest in its raw headers) stays what it was before scan maps
    existed.
    """
    lines = []
    for k, v in dataclasses.asdict(cfg).items():
        if v is None or (k.startswith("scan_") and cfg.mode != "scan"):
            continue
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, str):
            lines.append(f'{k} = "{v}"')
        else:
            lines.append(f"{k} = {v!r}")
    return "\n".join(lines) + "\n"
