"""Configuration of one simulated observation: defaults < TOML file < keyword overrides.

Every effect has an ``include_*`` switch; every number that no source
confirms has a documented default here (see ``shared/docs/mips-facts.md``).
The resolved configuration is written, as TOML text, into ``truth.h5`` and the
raw headers' provenance so a run can be repeated exactly.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

__all__ = ["SimConfig", "load_config", "to_toml"]


@dataclass
class SimConfig:
    """All parameters of a simulated Ge photometry observation."""

    band: int = 70
    mode: str = "photometry"
    seed: int = 1
    aorkey: int = 12345678
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
    # --- scene (surface brightness in MJy/sr, fluxes in Jy at this band)
    n_sources: int = 6
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
    reset_noise_dn: float = 30.0       # kTC-like scatter of the reset level per DCE; UNCONFIRMED

    def __post_init__(self):
        if self.mode != "photometry":
            raise ValueError(f"mode {self.mode!r} is not implemented yet (photometry only)")
        if self.band not in (70, 160):
            raise ValueError(f"band {self.band} is not implemented yet (70, 160)")
        if self.n_dce < 1 or self.stim_cycle < 2:
            raise ValueError("n_dce must be >= 1 and stim_cycle >= 2")


def load_config(path: str | Path | None = None, **overrides) -> SimConfig:
    """Defaults, then the TOML file at ``path`` (if any), then ``overrides`` (None values ignored)."""
    values: dict = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                values.update(tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: cannot read configuration: {exc}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(SimConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path or 'configuration'}: unknown parameter(s) {', '.join(unknown)}")
    return SimConfig(**values)


def to_toml(cfg: SimConfig) -> str:
    """The resolved configuration as TOML text (None values omitted)."""
    lines = []
    for k, v in dataclasses.asdict(cfg).items():
        if v is None:
            continue
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, str):
            lines.append(f'{k} = "{v}"')
        else:
            lines.append(f"{k} = {v!r}")
    return "\n".join(lines) + "\n"
