"""Score a reprocessed 24 um observation against truth, correction by correction.

For every DCE with DCENUM >= 1 the calibration error is the median over good
pixels (no pmask, latent or saturation bit) of ``BCD / sky_mjysr - 1``.  Each
correction of :mod:`reprocess.si_bcd` is then switched off in turn (the DCE
recalibrated in memory from its raw planes) and the same figure recomputed,
together with the error in the region that correction is about (bottom rows
for read-2, spot pixels for the flat, replaced pixels for saturation...).

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

__all__ = ["validate_si", "format_report_si", "source_droop_offset", "plot_validation_si"]

PULL_EDGES = np.linspace(-6, 6, 121)

_BAD = BBMSK["PMASK"] | BBMSK["LATENT"] | BBMSK["SATURATED"] | BBMSK["SATURATED_HARD"]


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
    """Figures of a 24 um observation (see the module notes)."""
    obs = Path(obs_dir)
    prod = load_si_products()
    rows = {name: {"all": [], "region": [], "region_on": []} for name in CORRECTIONS}
    on_err, t_s, dcenums, pulls, latent_err, labels = [], [], [], [], [], {}
    with h5py.File(obs / "truth.h5", "r") as truth:
        names = sorted(truth["dce"], key=lambda n: truth["dce"][n].attrs["t_start_s"])
        for name in names:
            bcd_path = obs / "bcd" / product_name(name, "bcd")
            if not bcd_path.exists():
                continue
            sky = truth["dce"][name]["sky_mjysr"][()]
            bcd = fits.getdata(bcd_path).astype(float)
            unc = fits.getdata(obs / "bcd" / product_name(name, "bunc")).astype(float)
            mask = fits.getdata(obs / "bcd" / product_name(name, "bbmsk"))
            good = (mask & _BAD) == 0
            err = bcd / sky - 1
            on_err.append(float(np.median(err[good])))
            t_s.append(float(truth["dce"][name].attrs["t_start_s"]))
            dcenums.append(int(truth["dce"][name].attrs["dcenum"]))
            pulls.append(((bcd - sky) / unc)[good])
            lat = (mask & BBMSK["LATENT"]) != 0
            if lat.any():
                latent_err.append(float(np.median(err[lat & ((mask & BBMSK["PMASK"]) == 0)])))
            dce = read_raw_si(obs / "raw" / f"{name}_raw.fits")
            for corr in CORRECTIONS:
                off_img, _, _ = calibrate_dce(dce, prod, (corr,))
                sel, labels[corr] = _region(corr, dce, prod, mask, good)
                rows[corr]["all"].append(float(np.median((off_img / sky - 1)[good])))
                if sel.any():
                    rows[corr]["region"].append(float(np.median((off_img / sky - 1)[sel])))
                    rows[corr]["region_on"].append(float(np.median(err[sel])))
    pull = np.concatenate(pulls)
    first = np.array(dcenums) <= 2
    table = []
    for corr in CORRECTIONS:
        r = rows[corr]
        m_off, rms_off = _stats(r["all"])
        table.append({"correction": corr, "off_mean": m_off, "off_rms": rms_off,
                      "region": labels.get(corr, ""), "region_on": _stats(r["region_on"])[0],
                      "region_off": _stats(r["region"])[0],
                      "off_dcenum_1_2": _stats(np.array(r["all"])[first])[0] if first.any() else None})
    mean, rms = _stats(on_err)
    return {"observation": str(obs), "band": 24, "n_bcd": len(on_err),
            "cal_error_mean": mean, "cal_error_rms": rms,
            "cal_error_dcenum_1_2": _stats(np.array(on_err)[first])[0] if first.any() else None,
            "bcd_pull_median": float(np.median(pull)),
            "bcd_pull_spread": float(1.4826 * np.median(np.abs(pull - np.median(pull)))),
            "n_pixels": int(pull.size),
            "pull_histogram": {"edges": PULL_EDGES.tolist(),
                               "counts": np.histogram(pull, PULL_EDGES)[0].tolist()},
            "latent_pixel_error": _stats(latent_err)[0] if latent_err else None,
            "corrections": table,
            "cal_error_series": {"t_s": t_s, "all_on": on_err,
                                 **{f"{c}_off": rows[c]["all"] for c in CORRECTIONS}}}


def format_report_si(res: dict) -> str:
    """A plain-text table of :func:`validate_si`'s figures."""
    pct = lambda v: "    n/a" if v is None or not np.isfinite(v) else f"{100 * v:+7.3f}%"  # noqa: E731
    lines = [f"Validation of {res['observation']} (24 um, {res['n_bcd']} BCDs, DCENUM >= 1)",
             f"  calibration error (median BCD/sky - 1 per DCE): mean {pct(res['cal_error_mean'])}, "
             f"RMS {100 * res['cal_error_rms']:.3f}%   (goal |mean| <= 0.2%, RMS <= 0.3%)",
             f"  DCENUM 1-2 only: mean {pct(res['cal_error_dcenum_1_2'])}",
             f"  BCD pulls (BCD - sky)/bunc: median {res['bcd_pull_median']:+.3f}, "
             f"spread {res['bcd_pull_spread']:.3f}",
             f"  latent-flagged pixels: median error {pct(res['latent_pixel_error'])}",
             "  each correction switched off (all others on):",
             f"    {'correction':<12} {'mean':>9} {'RMS':>8} {'DCENUM1-2':>10}   "
             f"{'region':<28} {'on':>9} {'off':>9}"]
    for row in res["corrections"]:
        lines.append(f"    {row['correction']:<12} {pct(row['off_mean'])} {100 * row['off_rms']:7.3f}% "
                     f"{pct(row['off_dcenum_1_2']):>10}   {row['region']:<28} "
                     f"{pct(row['region_on'])} {pct(row['region_off'])}")
    if "droop_source_offset" in res:
        d = res["droop_source_offset"]
        lines.append(f"  offset caused by the bright source, background pixels (fraction of background): "
                     f"droop correction off {pct(d['off'])}, on {pct(d['on'])} (goal <= 0.1%)")
    return "\n".join(lines)


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
                bg = (np.abs(sky / np.median(sky) - 1) < 0.2) & (((ma | mb) & _BAD) == 0)
                with h5py.File(a_dir / "truth.h5", "r") as ta:
                    bg &= np.abs(ta["dce"][name]["sky_mjysr"][()] / sky - 1) < 0.001
                out[key].append(float(np.median((ia - ib)[bg]) / np.median(sky)))
    return {k: float(np.mean(v)) for k, v in out.items()}


def plot_validation_si(res: dict, path: str | Path) -> None:
    """BCD pulls, per-DCE calibration error against time, and what each correction buys."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .validate import plot_pulls
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    plot_pulls(ax[0], res["pull_histogram"], res["n_pixels"], "(BCD - sky) / bunc")
    ax[0].set_title(f"BCD pulls: median {res['bcd_pull_median']:+.3f}, spread {res['bcd_pull_spread']:.3f}")
    ax[0].legend()
    series = res["cal_error_series"]
    t_min = np.array(series["t_s"]) / 60.0
    for key in ("first_frame_off", "dark_off", "all_on"):
        ax[1].plot(t_min, 100 * np.array(series[key]), ".-", label=key.replace("_", " "))
    ax[1].axhline(0, color="k", lw=0.5)
    ax[1].set_xlabel("time since AOR start (min)")
    ax[1].set_ylabel("median BCD/sky - 1 (%)")
    ax[1].set_title("calibration error per DCE")
    ax[1].legend()
    names = [r["correction"] for r in res["corrections"]]
    off = [abs(100 * r["region_off"]) for r in res["corrections"]]
    on = [abs(100 * r["region_on"]) for r in res["corrections"]]
    y = np.arange(len(names))
    ax[2].barh(y + 0.2, off, 0.4, label="correction off", color="0.6")
    ax[2].barh(y - 0.2, on, 0.4, label="all on")
    ax[2].set_yticks(y, [f"{n}\n({r['region']})" for n, r in zip(names, res["corrections"])], fontsize=7)
    ax[2].set_xscale("log")
    ax[2].set_xlabel("|median error| in the affected pixels (%)")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
