"""Score a reprocessed observation against the simulator's truth.

``validate(obs_dir)`` reads ``truth.h5``, ``bcd/ramps.h5`` and the BCDs and
returns a dictionary of figures:

* slope pulls ``(slope - truth) / slope_err`` over every good-pixel ramp:
  median, robust spread (1.4826 x MAD), standard deviation within |pull| < 5,
  chi^2/dof (mean pull^2 within |pull| < 5) and the fraction beyond 5;
* jumps: completeness in bins of amplitude over the noise of one read
  difference, ``sigma_d = sqrt(2 rn^2 + slope dt / gain)``; false positives per
  usable difference against what the threshold predicts;
* calibration error per sky DCE: the median over good pixels of
  ``BCD / sky_mjysr - 1``; its mean and RMS over the observation, with the stim
  responsivity interpolated (as reprocessed) and held constant (tracking off).

Only pixels without fatal pmask bits count.  ``plot_validation`` draws the
three figures (pulls, calibration error against time, completeness against
amplitude) into one PNG.
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits

from calibration.bitmask import PMASK_FATAL
from calibration.products import load_products
from reprocess.io import product_name
from reprocess.stim import StimResponse, calibrate, constant_response

__all__ = ["validate", "format_report", "plot_validation", "AMP_BINS"]

AMP_BINS = (0, 2, 4, 6, 8, 12, 20, 50, 1e9)   # jump amplitude / sigma_d
PULL_EDGES = np.linspace(-6, 6, 121)


def _robust_sigma(x):
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def truth_band(obs_dir: str | Path) -> int:
    """Band of a simulated observation, from the configuration in its truth file."""
    path = Path(obs_dir) / "truth.h5"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (run `mips simulate` first)")
    with h5py.File(path, "r") as truth:
        return int(tomllib.loads(truth.attrs["config"])["band"])


def validate(obs_dir: str | Path) -> dict:
    """Figures of merit of ``obs_dir`` (see the module notes; 24 um: :mod:`mips.validate_si`)."""
    obs = Path(obs_dir)
    if truth_band(obs) == 24:
        from .validate_si import validate_si
        return validate_si(obs)
    for need in (obs / "truth.h5", obs / "bcd" / "ramps.h5"):
        if not need.exists():
            raise FileNotFoundError(f"{need}: missing (run `mips simulate` and `mips reprocess` first)")
    with h5py.File(obs / "truth.h5", "r") as truth, h5py.File(obs / "bcd" / "ramps.h5", "r") as ramps:
        rn = truth["detector/read_noise_dn"][()]
        good = (truth["detector/pmask"][()] & PMASK_FATAL) == 0
        threshold = float(ramps.attrs["jump_threshold"])
        predicted = float(ramps.attrs["false_jump_rate"])
        names = sorted(truth["dce"], key=lambda n: truth["dce"][n].attrs["t_start_s"])
        pulls, jump_rows, fp, ndiff = [], [], 0, 0
        for name in names:
            t, r = truth["dce"][name], ramps["dce"][name]
            slope, err, true = r["slope_dn_s"][()], r["slope_err_dn_s"][()], t["slope_dn_s"][()]
            ok = good & np.isfinite(slope)
            pulls.append(((slope - true) / err)[ok])
            rows, n_fp, n_d = _score_jumps(t, r, rn, good)
            jump_rows.append(rows)
            fp += n_fp
            ndiff += n_d
        cal = _calibration_errors(obs, names, truth, ramps, good)
    pull = np.concatenate(pulls)
    core = pull[np.abs(pull) < 5]
    jumps = np.concatenate(jump_rows) if jump_rows else np.zeros((0, 2))
    result = {
        "observation": str(obs),
        "n_ramps": int(pull.size),
        "pull_median": float(np.median(pull)),
        "pull_spread": _robust_sigma(pull),
        "pull_std_core": float(core.std()),
        "chi2_dof": float(np.mean(core ** 2)),
        "pull_outlier_fraction": float(np.mean(np.abs(pull) >= 5)),
        "pull_histogram": {"edges": PULL_EDGES.tolist(),
                           "counts": np.histogram(pull, PULL_EDGES)[0].tolist()},
        "jump_threshold_sigma": threshold,
        "jump_completeness": _completeness(jumps),
        "false_jumps_per_diff": fp / max(ndiff, 1),
        "false_jumps_predicted_per_diff": predicted,
        "false_jump_ratio": (fp / max(ndiff, 1)) / predicted if predicted > 0 else float("nan"),
        "n_false_jumps": int(fp),
        "n_diffs": int(ndiff),
        **cal,
    }
    return result


def _score_jumps(t, r, rn, good):
    """Truth jumps (amplitude / sigma_d, found?) and false positives of one DCE."""
    jumps = r["jumps"][()]
    first = r["first_unusable_read"][()]
    nreads = jumps.shape[0]
    nramps = int(r.attrs.get("nramps", 1))
    dt = float(t.attrs["read_time_s"])
    gain = float(t.attrs["gain_e_per_dn"])
    true = t["slope_dn_s"][()]
    sig_d = np.sqrt(2 * rn ** 2 + np.maximum(true, 0) * dt / gain)
    ev = t["cr_events"][()]
    amp = np.zeros(jumps.shape)
    np.add.at(amp, (ev["read"], ev["y"], ev["x"]), ev["amplitude_dn"])
    k = np.arange(nreads)[:, None, None]
    per = nreads // nramps
    usable = (k < first[None]) & (k % per != 0) & good[None]   # a difference inside a ramp, unsaturated
    hit = (amp > 0) & usable
    rows = np.column_stack([(amp / sig_d[None])[hit], jumps[hit]])
    false = jumps & usable & (amp == 0)
    return rows, int(false.sum()), int(usable.sum())


def _completeness(rows) -> list[dict]:
    out = []
    for lo, hi in zip(AMP_BINS[:-1], AMP_BINS[1:]):
        sel = (rows[:, 0] >= lo) & (rows[:, 0] < hi)
        n = int(sel.sum())
        found = int(rows[sel, 1].sum()) if n else 0
        out.append({"amp_lo": lo, "amp_hi": hi, "n": n, "found": found,
                    "completeness": found / n if n else float("nan")})
    above8 = rows[:, 0] >= 8
    out.append({"amp_lo": 8, "amp_hi": float("inf"), "n": int(above8.sum()),
                "found": int(rows[above8, 1].sum()),
                "completeness": float(rows[above8, 1].mean()) if above8.any() else float("nan")})
    return out


def _calibration_errors(obs, names, truth, ramps, good) -> dict:
    """Per-DCE median(BCD/sky - 1), as reprocessed and with stim tracking off."""
    stim = StimResponse(ramps["stim/t_mjd"][()], ramps["stim/response_dn_s"][()],
                        ramps["stim/response_err_dn_s"][()])
    band = truth_band(obs)
    first_bcd = next((obs / "bcd" / product_name(n, "bcd") for n in names
                      if (obs / "bcd" / product_name(n, "bcd")).exists()), None)
    if first_bcd is None:
        raise FileNotFoundError(f"{obs / 'bcd'}: no BCDs to validate")
    calid = fits.getval(first_bcd, "CALID")
    prod = load_products(band)
    if prod.calid != calid:
        raise ValueError(f"{first_bcd}: made with products {calid}, cannot re-derive with {prod.calid}")
    const, const_err, _ = constant_response(stim)
    t_s, on, off = [], [], []
    for name in names:
        if truth["dce"][name].attrs["stim"]:
            continue
        path = obs / "bcd" / product_name(name, "bcd")
        if not path.exists():
            continue
        sky = truth["dce"][name]["sky_mjysr"][()]
        r = ramps["dce"][name]
        bcd = fits.getdata(path).astype(float)
        off_img, _ = calibrate(r["slope_dn_s"][()], r["slope_err_dn_s"][()], const, const_err,
                               dark=prod.dark, illum=prod.illum, fluxconv=prod.fluxconv)
        t_s.append(float(truth["dce"][name].attrs["t_start_s"]))
        on.append(float(np.nanmedian((bcd / sky - 1)[good])))
        off.append(float(np.nanmedian((off_img / sky - 1)[good])))
    on_a, off_a = np.array(on), np.array(off)
    return {"n_bcd": len(on), "cal_error_mean": float(on_a.mean()),
            "cal_error_rms": float(np.sqrt(np.mean(on_a ** 2))),
            "cal_error_mean_stim_off": float(off_a.mean()),
            "cal_error_rms_stim_off": float(np.sqrt(np.mean(off_a ** 2))),
            "cal_error_series": {"t_s": t_s, "stim_on": on, "stim_off": off}}


def format_report(res: dict) -> str:
    """A plain-text table of the figures."""
    if res.get("band") == 24:
        from .validate_si import format_report_si
        return format_report_si(res)
    lines = [f"Validation of {res['observation']}",
             f"  ramps scored                 {res['n_ramps']}",
             f"  slope pull median            {res['pull_median']:+.4f}   (goal within +-0.02)",
             f"  slope pull spread (1.48 MAD) {res['pull_spread']:.4f}    (goal 0.97-1.03)",
             f"  pull std within |pull|<5     {res['pull_std_core']:.4f}",
             f"  chi2/dof within |pull|<5     {res['chi2_dof']:.4f}",
             f"  pulls beyond 5 sigma         {res['pull_outlier_fraction']:.2e}",
             f"  jump threshold               {res['jump_threshold_sigma']} sigma",
             "  jump completeness by amplitude (units of read-difference noise):"]
    for row in res["jump_completeness"]:
        hi = "inf" if row["amp_hi"] > 1e8 else f"{row['amp_hi']:g}"
        lines.append(f"    [{row['amp_lo']:g}, {hi:>4}) n={row['n']:6d}  "
                     f"completeness={row['completeness']:.4f}")
    lines += [
        f"  false jumps per difference   {res['false_jumps_per_diff']:.3e} "
        f"(threshold predicts {res['false_jumps_predicted_per_diff']:.3e}; ratio "
        f"{res['false_jump_ratio']:.2f}, goal <= 1.5; {res['n_false_jumps']} of {res['n_diffs']})",
        f"  calibration error, {res['n_bcd']} BCDs (median BCD/sky - 1 per DCE):",
        f"    stim interpolated: mean {100 * res['cal_error_mean']:+.3f}%  "
        f"RMS {100 * res['cal_error_rms']:.3f}%   (goal |mean|<=0.2%, RMS<=0.5%)",
        f"    stim tracking off: mean {100 * res['cal_error_mean_stim_off']:+.3f}%  "
        f"RMS {100 * res['cal_error_rms_stim_off']:.3f}%",
    ]
    return "\n".join(lines)


def write_json(res: dict, path: str | Path) -> None:
    """Write the figures as JSON (atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=2, default=float))
    tmp.replace(path)


def plot_pulls(ax, hist: dict, n: int, label: str) -> None:
    """Step histogram of pulls with the N(0, 1) expectation for ``n`` values (log scale)."""
    counts = np.array(hist["counts"])
    edges = np.array(hist["edges"])
    centers = 0.5 * (edges[1:] + edges[:-1])
    ax.step(centers, counts, where="mid", label=label)
    norm = n * (edges[1] - edges[0])
    ax.plot(centers, norm * np.exp(-0.5 * centers ** 2) / np.sqrt(2 * np.pi), "k--", label="N(0, 1)")
    ax.set_yscale("log")
    ax.set_ylim(0.5, None)


def plot_validation(res: dict, path: str | Path) -> None:
    """Pull histogram, calibration error against time, jump completeness against amplitude."""
    if res.get("band") == 24:
        from .validate_si import plot_validation_si
        return plot_validation_si(res, path)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    plot_pulls(ax[0], res["pull_histogram"], res["n_ramps"], "slope pulls")
    ax[0].set_xlabel("(slope - truth) / error")
    ax[0].set_title(f"pulls: median {res['pull_median']:+.3f}, spread {res['pull_spread']:.3f}")
    ax[0].legend()
    series = res["cal_error_series"]
    t_min = np.array(series["t_s"]) / 60.0
    ax[1].plot(t_min, 100 * np.array(series["stim_off"]), ".", color="0.6", label="stim tracking off")
    ax[1].plot(t_min, 100 * np.array(series["stim_on"]), ".", label="stim interpolated")
    ax[1].axhline(0, color="k", lw=0.5)
    ax[1].set_xlabel("time since AOR start (min)")
    ax[1].set_ylabel("median BCD/sky - 1 (%)")
    ax[1].set_title("calibration error per DCE")
    ax[1].legend()
    rows = [r for r in res["jump_completeness"][:-1] if r["n"]]
    mid = [np.sqrt(max(r["amp_lo"], 0.5) * min(r["amp_hi"], 100)) for r in rows]
    ax[2].semilogx(mid, [r["completeness"] for r in rows], "o-")
    ax[2].axvline(8, color="k", ls=":", label="8 sigma_d")
    ax[2].axvline(res["jump_threshold_sigma"], color="r", ls=":", label="threshold")
    ax[2].set_xlabel("jump amplitude / read-difference noise")
    ax[2].set_ylabel("fraction found")
    ax[2].set_title("jump completeness")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
