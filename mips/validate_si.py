"""24 um additions to :mod:`mips.validate`: what each correction buys, and the droop test.

The 24 um BCDs are scored like the Ge ones, from the files on disk
(:func:`mips.validate.validate`); good pixels are those whose ``_bbmsk`` has
none of :data:`SI_BAD` (permanent mask, latent -- flagged, not corrected --
and saturation).  This module adds diagnostics, without goals:

* the calibration error of DCENUM 1-2 (first-frame effect) and of
  latent-flagged pixels, from the BCDs on disk;
* each correction of :mod:`reprocess.si_bcd` switched off in turn: every DCE is
  recalibrated in memory from its raw planes with the shipped products and the
  same figure recomputed, together with the error in the region that correction
  is about (bottom rows for read-2, spot pixels for the flat, replaced pixels
  for saturation...).  This re-runs the calibration, so it is only done when
  the BCDs were made with the shipped products and every correction on;
  otherwise it is skipped with a note.

:func:`source_droop_offset` compares two observations that differ only by a
bright source (same seed) to isolate the droop offset the source causes.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits

from calibration.bitmask import BBMSK
from calibration.products import load_si_products
from reprocess.io import product_name, read_raw_si
from reprocess.si_bcd import CORRECTIONS
from reprocess.si_pipeline import calibrate_dce

__all__ = ["SI_BAD", "validate_si", "si_diagnostics", "format_diagnostics_si", "source_droop_offset",
           "add_droop_reference", "plot_validation_si"]

SI_BAD = (BBMSK["PMASK"] | BBMSK["LATENT"] | BBMSK["SATURATED"] | BBMSK["SATURATED_HARD"]
          | BBMSK["PERSISTENT_LATENT"])


def _region(name, dce, prod, mask, on_mask):
    """Pixels a correction is about (a bool map), and a label."""
    if name == "read2":
        sel = np.zeros(mask.shape, bool)
        sel[:6] = True
        return sel & on_mask, "bottom 6 rows"
    if name == "saturation":
        return (mask & BBMSK["SATURATED"]) != 0, "replaced (saturated) pixels"
    if name == "flat":
        flat, _ = prod.flat_for(float(dce.header["CSM_PRED"]))
        return (flat < 0.9) & on_mask, "pick-off-mirror spots"
    if name == "dark":
        sel = np.zeros(mask.shape, bool)
        sel[:, 3::4] = True
        return sel & on_mask, "readout-4 columns"
    return on_mask, "all good pixels"


def _stats(values):
    a = np.array([v for v in values if np.isfinite(v)])
    if not a.size:
        return float("nan"), float("nan")
    return float(a.mean()), float(np.sqrt(np.mean(a ** 2)))


def validate_si(obs_dir: str | Path) -> dict:
    """Figures of a 24 um observation: :func:`mips.validate.validate` (kept for callers of this name)."""
    from .validate import validate
    return validate(obs_dir)


def si_diagnostics(obs: Path, truth: h5py.File, res: dict) -> dict:
    """Diagnostics of a 24 um observation whose BCD figures ``res`` holds (see the module notes)."""
    series = res["cal_error_series"]
    dcenums = np.array([int(truth["dce"][n].attrs["dcenum"]) for n in series["dce"]])
    first = dcenums <= 2
    latent_err = []
    for name in series["dce"]:
        bcd = fits.getdata(obs / "bcd" / product_name(name, "bcd")).astype(float)
        mask = fits.getdata(obs / "bcd" / product_name(name, "bbmsk"))
        lat = ((mask & BBMSK["LATENT"]) != 0) & ((mask & BBMSK["PMASK"]) == 0)
        if lat.any():
            latent_err.append(float(np.median((bcd / truth["dce"][name]["sky_mjysr"][()] - 1)[lat])))
    out = {"cal_error_dcenum_1_2": (_stats(np.array(series["cal_error"])[first])[0]
                                    if first.any() else None),
           "latent_pixel_error": _stats(latent_err)[0] if latent_err else None}
    prod = load_si_products()
    hdr = fits.getheader(obs / "bcd" / product_name(series["dce"][0], "bcd"))
    if hdr.get("CALID") != prod.calid or str(hdr.get("CORROFF", "none")) != "none":
        out["corrections"] = []
        out["corrections_note"] = (f"skipped: BCDs made with {hdr.get('CALID')} and corrections off "
                                   f"'{hdr.get('CORROFF')}', the table needs {prod.calid}, all on")
        return out
    out.update(_corrections_table(obs, truth, series["dce"], prod, first))
    return out


def _corrections_table(obs, truth, names, prod, first) -> dict:
    """Each correction switched off in turn, recalibrated from the raw planes (see the module notes)."""
    rows = {name: {"all": [], "region": [], "region_on": []} for name in CORRECTIONS}
    labels = {}
    for name in names:
        sky = truth["dce"][name]["sky_mjysr"][()]
        err = fits.getdata(obs / "bcd" / product_name(name, "bcd")).astype(float) / sky - 1
        mask = fits.getdata(obs / "bcd" / product_name(name, "bbmsk"))
        good = (mask & SI_BAD) == 0
        dce = read_raw_si(obs / "raw" / f"{name}_raw.fits")
        for corr in CORRECTIONS:
            off_img, _, _ = calibrate_dce(dce, prod, (corr,))
            sel, labels[corr] = _region(corr, dce, prod, mask, good)
            rows[corr]["all"].append(float(np.median((off_img / sky - 1)[good])))
            if sel.any():
                rows[corr]["region"].append(float(np.median((off_img / sky - 1)[sel])))
                rows[corr]["region_on"].append(float(np.median(err[sel])))
    table = []
    for corr in CORRECTIONS:
        r = rows[corr]
        m_off, rms_off = _stats(r["all"])
        table.append({"correction": corr, "off_mean": m_off, "off_rms": rms_off,
                      "region": labels.get(corr, ""), "region_on": _stats(r["region_on"])[0],
                      "region_off": _stats(r["region"])[0],
                      "off_dcenum_1_2": _stats(np.array(r["all"])[first])[0] if first.any() else None})
    return {"corrections": table,
            "corrections_series": {f"{c}_off": rows[c]["all"] for c in CORRECTIONS}}


def _pct(v) -> str:
    return "    n/a" if v is None or not np.isfinite(v) else f"{100 * v:+7.3f}%"


def format_diagnostics_si(res: dict) -> list[str]:
    """Report lines of :func:`si_diagnostics`'s figures."""
    lines = [f"    DCENUM 1-2 calibration error: mean {_pct(res['cal_error_dcenum_1_2'])}; "
             f"latent-flagged pixels: median error {_pct(res['latent_pixel_error'])}"]
    if not res["corrections"]:
        lines.append(f"    corrections table {res['corrections_note']}")
    else:
        lines += ["    each correction switched off (all others on; recalibrated from raw):",
                  f"      {'correction':<12} {'mean':>9} {'RMS':>8} {'DCENUM1-2':>10}   "
                  f"{'region':<28} {'on':>9} {'off':>9}"]
        for row in res["corrections"]:
            lines.append(f"      {row['correction']:<12} {_pct(row['off_mean'])} "
                         f"{100 * row['off_rms']:7.3f}% {_pct(row['off_dcenum_1_2']):>10}   "
                         f"{row['region']:<28} {_pct(row['region_on'])} {_pct(row['region_off'])}")
    if "droop_source_offset" in res:
        d = res["droop_source_offset"]
        lines.append(f"    offset caused by the bright source, background pixels (fraction of "
                     f"background): droop correction off {_pct(d['off'])}, on {_pct(d['on'])}")
    return lines


def add_droop_reference(res: dict, reference: str | Path) -> dict:
    """Add :func:`source_droop_offset` of ``res``'s observation against ``reference``, scored; returns ``res``."""
    from .validate import rejudge
    res["droop_source_offset"] = source_droop_offset(res["observation"], reference)
    res["droop_offset"] = res["droop_source_offset"]["on"]
    return rejudge(res)


def source_droop_offset(obs_with: str | Path, obs_without: str | Path) -> dict:
    """Offset the extra source of ``obs_with`` causes in background pixels, droop correction on and off.

    The two observations must share the seed and differ only in the source.  The
    offset is the median over background pixels (sky within 20 % of its median, not
    flagged) of the BCD difference, divided by the median sky; averaged over DCEs.
    """
    prod = load_si_products()
    out = {"on": [], "off": []}
    a_dir, b_dir = Path(obs_with), Path(obs_without)
    with h5py.File(b_dir / "truth.h5", "r") as truth:
        for name in truth["dce"]:
            if int(truth["dce"][name].attrs["dcenum"]) == 0:
                continue
            sky = truth["dce"][name]["sky_mjysr"][()]
            da = read_raw_si(a_dir / "raw" / f"{name}_raw.fits")
            db = read_raw_si(b_dir / "raw" / f"{name}_raw.fits")
            for key, off in (("on", ()), ("off", ("droop", "row_droop"))):
                ia, _, ma = calibrate_dce(da, prod, off)
                ib, _, mb = calibrate_dce(db, prod, off)
                bg = (np.abs(sky / np.median(sky) - 1) < 0.2) & (((ma | mb) & SI_BAD) == 0)
                with h5py.File(a_dir / "truth.h5", "r") as ta:
                    bg &= np.abs(ta["dce"][name]["sky_mjysr"][()] / sky - 1) < 0.001
                out[key].append(float(np.median((ia - ib)[bg]) / np.median(sky)))
    return {k: float(np.mean(v)) for k, v in out.items()}


def plot_validation_si(res: dict, path: str | Path) -> None:
    """BCD pulls, per-pixel bias map, per-DCE calibration error, and what each correction buys."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .validate import plot_bcd_pulls, plot_bias_map, plot_cal_error
    fig, ax = plt.subplots(2, 2, figsize=(12, 8.4))
    plot_bcd_pulls(ax[0, 0], res)
    plot_bias_map(fig, ax[0, 1], res)
    plot_cal_error(ax[1, 0], res)
    t_min = np.array(res["cal_error_series"]["t_s"]) / 60.0
    for key in ("first_frame_off", "dark_off"):
        if key in res.get("corrections_series", {}):
            ax[1, 0].plot(t_min, 100 * np.array(res["corrections_series"][key]), ".-",
                          label=key.replace("_", " "))
    ax[1, 0].legend()
    if res["corrections"]:
        names = [r["correction"] for r in res["corrections"]]
        off = [abs(100 * r["region_off"]) for r in res["corrections"]]
        on = [abs(100 * r["region_on"]) for r in res["corrections"]]
        y = np.arange(len(names))
        ax[1, 1].barh(y + 0.2, off, 0.4, label="correction off", color="0.6")
        ax[1, 1].barh(y - 0.2, on, 0.4, label="all on")
        ax[1, 1].set_yticks(y, [f"{n}\n({r['region']})" for n, r in zip(names, res["corrections"])],
                            fontsize=7)
        ax[1, 1].set_xscale("log")
        ax[1, 1].set_xlabel("|median error| in the affected pixels (%)")
        ax[1, 1].legend()
    else:
        ax[1, 1].axis("off")
        ax[1, 1].text(0, 0.5, f"corrections table {res['corrections_note']}", fontsize=8, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
