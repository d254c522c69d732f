"""Score a reprocessed observation against the simulator's truth, from the files on disk.

What is scored is what a user gets: each BCD, its ``_bunc`` and its bit mask as
written in ``DIR/bcd`` (and, for the Ge arrays, the ramp fits in
``bcd/ramps.h5``).  Nothing is recalibrated here, so an error in the
calibration products the BCDs were made with (``mips reprocess --products``)
shows up in the figures.  Before anything is scored, every product must show
that it was made from this folder's raw data: its ``RAWSHA1`` card must equal
the SHA-1 of ``raw/<RAWFILE>``.  A product without the card, a missing raw
file or a mismatch (``simulate --overwrite`` after ``reprocess`` leaves BCDs of
the old raw data beside the new truth) is an error, never a score.

Figures of every band
---------------------
* **good fraction**: pixel-DCEs that the BCD's own mask leaves usable (finite
  value and uncertainty, no bit of ``bad_bits``: fatal pmask, NO_STIM,
  NO_SLOPE for Ge; pmask, latent, saturation at 24 um) over the pixels truth
  says the detector can measure, times the BCDs expected.  Everything below is
  computed over good pixels only, so this figure keeps flagging (or not
  writing BCDs) from being a way to pass.
* **BCD pulls** ``(BCD - sky) / bunc`` with ``sky`` the noiseless sky each
  pixel saw: median and robust spread (1.4826 MAD).  They are N(0, 1) when the
  BCD is unbiased and ``_bunc`` holds every error the pipeline makes.
* **per-detector-pixel bias** ``b_p = sqrt(n_p) * mean(pull)`` over the n_p
  DCEs in which pixel p is good, each pull clipped to +-5 first (one cosmic ray
  left in a 24 um BCD, where the on-board slope keeps them, would otherwise
  make a pixel look biased; a persistent bias is not clipped away): N(0, 1)
  for an unbiased pixel with honest errors.  A flat-field (illumination-correction) error f in a pixel adds
  ``f sqrt(n_p) / (bunc/sky)``: it grows with the observation's length, while
  per-DCE figures do not (an error of half the per-DCE noise widens the pull
  spread by 12 % whatever the length, but at 40 DCEs moves b_p by ~3).  The
  spread (standard deviation) of b_p over pixels, as sensitive to a few bad
  pixels as to all pixels a little off, is scored and its map plotted.
* **calibration error per DCE**, the median over good pixels of
  ``BCD/sky - 1``: its mean and RMS over the observation (a FLUXCONV error
  moves the mean; responsivity tracking errors the RMS).

Ge ramp figures (``bcd/ramps.h5``)
----------------------------------
* slope pulls ``(slope - truth) / slope_err`` over every ramp of a pixel
  without fatal truth-pmask bits that used all its reads (truth records the
  slope over the whole DCE; a ramp cut short by saturation, such as a stim
  flash's, measured only its first part, over which responsivity steps and
  drift make the true slope differ by more than its small error): median,
  robust spread, standard deviation and chi^2/dof within |pull| < 5, fraction
  beyond 5;
* jumps: completeness in bins of amplitude over the noise of one read
  difference ``sigma_d = sqrt(2 rn^2 + slope dt / gain)``; false positives per
  usable difference against what the threshold predicts.

Goals
-----
:data:`GOALS` holds one goal per scored figure with its reason.  For a
statistical figure the tolerance is the larger of the requirement and
``K_SIGMA`` standard errors of the figure for the sample at hand, so a small
run is not judged beyond what it can resolve.  The BCD pulls of one pixel share
the flash noise of the responsivity that calibrated them, so their median and
spread use the effective sample size ``N / deff`` with the design effect
``deff = var(b_p)`` (Kish): the variance of the per-pixel means in units of
what independent pulls would give, clipped to between 1 and the square of the
per-pixel goal (beyond that the per-pixel figure misses its goal itself, and
the median's tolerance widens no further).

Dropped: the "stim tracking off" calibration error, which re-ran the
calibration with the shipped products instead of reading what was written.
To see what tracking buys, reprocess a copy with ``--stim constant`` and
validate it: the figures then come from files on disk too.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
from astropy.io import fits

from calibration.bitmask import PMASK_FATAL
from calibration.products import load_products, load_si_products
from reprocess.bcd import GE_FATAL
from reprocess.io import find_ramps, product_name

__all__ = ["validate", "judge", "rejudge", "format_report", "plot_validation", "write_json", "check_identity",
           "score_bcds", "truth_band", "GOALS", "Goal", "K_SIGMA", "AMP_BINS"]

AMP_BINS = (0, 2, 4, 6, 8, 12, 20, 50, 1e9)   # jump amplitude / sigma_d
PULL_EDGES = np.linspace(-6, 6, 121)
K_SIGMA = 4.0          # statistical tolerances, in standard errors of the figure
PULL_CLIP = 5.0        # pulls enter the per-pixel bias clipped to +-5 (a rare outlier is not a bias)
_MEDIAN_SE = 1.2533    # standard error of a Gaussian sample's median, x sigma / sqrt(N)
_MAD_SE = 1.1664       # standard error of 1.4826 MAD, x sigma / sqrt(N) (efficiency 0.368)
_MASK_KIND = {24: "bbmsk", 70: "bmask", 160: "bmask"}


# --------------------------------------------------------------------------- goals
@dataclass(frozen=True)
class Goal:
    """A figure's goal: ``low <= res[figure] <= high`` (a bound may be None), and why."""

    figure: str
    label: str
    low: Callable[[dict], float] | None
    high: Callable[[dict], float] | None
    reason: str
    fmt: str = ".4f"
    needs: str | None = None    # a count in the result that must be > 0 for the goal to apply


def _pixel_bias_ceiling(r: dict) -> float:
    return max(1.5, 1 + K_SIGMA / np.sqrt(2 * max(r["n_bias_pixels"], 1)))


def _bcd_n_eff(r: dict) -> float:
    """N / deff, the design effect var(b_p) capped at what the per-pixel goal allows."""
    deff = np.clip(r["pixel_bias_spread"] ** 2, 1.0, _pixel_bias_ceiling(r) ** 2)
    return r["n_pixels"] / deff if r["n_pixels"] and np.isfinite(deff) else float(r["n_pixels"])


def _stat_tol(floor: float, se_unit: float, n_eff: float) -> float:
    """max(floor, K_SIGMA standard errors) for an effective sample of ``n_eff`` values."""
    return max(floor, K_SIGMA * se_unit / np.sqrt(n_eff)) if n_eff > 0 else floor


def _bcd_median_tol(r):
    """Statistical tolerance, widened in quadrature by twice the stated FLUXCONV error in
    pull units (that systematic is common to every pixel, so ``_bunc`` leaves it out)."""
    fluxconv = 2 * r.get("fluxconv_rel_err", 0.0) / r.get("bcd_rel_unc_median", np.inf)
    return float(np.hypot(_stat_tol(0.02, _MEDIAN_SE, _bcd_n_eff(r)), fluxconv))


def _bcd_spread_tol(r):
    return _stat_tol(0.03, _MAD_SE, _bcd_n_eff(r))


def _slope_median_tol(r):
    return _stat_tol(0.02, _MEDIAN_SE, r["n_ramps"])


def _slope_spread_tol(r):
    return _stat_tol(0.03, _MAD_SE, r["n_ramps"])


def _cal_mean_tol(r):
    return float(np.hypot(0.002, 2 * r.get("fluxconv_rel_err", 0.0)))


def _rms(a: np.ndarray) -> float:
    """RMS of the finite values of ``a`` (0 when there are none)."""
    a = a[np.isfinite(a)]
    return float(np.sqrt(np.mean(a ** 2))) if a.size else 0.0


def _cal_rms_ceiling(r):
    return float(np.hypot(0.003 if r["band"] == 24 else 0.005, r.get("cal_error_noise_rms", 0.0)))


def _completeness_floor(r):
    n = r["jump_completeness"][-1]["n"]
    return 0.99 - K_SIGMA * np.sqrt(0.99 * 0.01 / max(n, 1))


def _false_jump_ceiling(r):
    expected = r["false_jumps_predicted_per_diff"] * r["n_diffs"]
    return 1.5 + K_SIGMA / np.sqrt(max(expected, 1e-12))


GOALS: tuple[Goal, ...] = (
    Goal("good_fraction", "usable pixel-DCEs scored", lambda r: 0.95, None,
         "flagging must not be a way to pass: at least 95 % of the pixel-DCEs the detector can "
         "measure (truth pmask x BCDs expected) are scored; measured: 70/160 um >= 0.9999 (cosmic "
         "rays rarely leave NO_SLOPE), 24 um 0.991-0.995 (latents, saturation)"),
    Goal("bcd_pull_median", "BCD pull median", lambda r: -_bcd_median_tol(r), _bcd_median_tol,
         "an unbiased BCD: within 0.02 sigma (1e-4 of the sky at 0.5 % noise) or K_SIGMA x "
         "1.2533 sqrt(deff / N), whichever is larger, widened in quadrature by twice the FLUXCONV "
         "error (FLUXERR) over the median relative _bunc", "+.4f", "n_pixels"),
    Goal("bcd_pull_spread", "BCD pull spread (1.4826 MAD)", lambda r: 1 - _bcd_spread_tol(r),
         lambda r: 1 + _bcd_spread_tol(r),
         "_bunc holds every error the pipeline makes: 1 within 0.03 or K_SIGMA x 1.1664 "
         "sqrt(deff / N)", ".4f", "n_pixels"),
    Goal("pixel_bias_spread", "per-pixel bias spread (std)", None, _pixel_bias_ceiling,
         "no pixel-level systematic error (flat, dark, nonlinearity) beyond what _bunc allows: "
         "std over pixels of sqrt(n) x mean pull <= 1.5 (1 ideally; the std's standard error "
         "is 1/sqrt(2 M) for M pixels)", ".3f", "n_bias_pixels"),
    Goal("cal_error_mean", "calibration error, mean over DCEs", lambda r: -_cal_mean_tol(r),
         _cal_mean_tol,
         "photometric accuracy of the BCDs: |mean(median BCD/sky - 1)| <= 0.2 % (the noise part is "
         "~0.03 % at 70 um, ~0.1 % at 160 um per DCE, averaged down by the DCE count), widened in "
         "quadrature by twice the FLUXCONV error the products state (FLUXERR)", "+.3%", "n_bcd"),
    Goal("cal_error_rms", "calibration error, RMS over DCEs", None, _cal_rms_ceiling,
         "responsivity tracking (Ge) and per-DCE corrections (24 um): RMS <= 0.5 % (Ge), 0.3 % "
         "(24 um), in quadrature with the per-DCE median's own noise (1.2533 x median _bunc/sky "
         "/ sqrt(pixels), RMS over DCEs): with flight noise a 160 um DCE's 35-pixel median is "
         "itself ~0.5 % noisy", ".3%", "n_bcd"),
    Goal("droop_offset", "bright source's droop left in background", lambda r: -0.001,
         lambda r: 0.001,
         "24 um with --droop-reference: the offset a bright source causes in background pixels, "
         "correction on, within 0.1 % of the background (without correction ~0.5 %)", "+.3%"),
    Goal("pull_median", "slope pull median", lambda r: -_slope_median_tol(r), _slope_median_tol,
         "an unbiased ramp fit: within 0.02 or K_SIGMA x 1.2533/sqrt(N ramps)", "+.4f", "n_ramps"),
    Goal("pull_spread", "slope pull spread (1.4826 MAD)", lambda r: 1 - _slope_spread_tol(r),
         lambda r: 1 + _slope_spread_tol(r),
         "slope errors at the true noise: 1 within 0.03 or K_SIGMA x 1.1664/sqrt(N ramps)", ".4f",
         "n_ramps"),
    Goal("jump_completeness_above8", "jumps found above 8 sigma_d", _completeness_floor, None,
         "a 4.5-sigma threshold finds ~99.98 % of 8-sigma jumps: >= 99 % less K_SIGMA binomial "
         "errors", ".4f", "n_jumps_above8"),
    Goal("false_jump_ratio", "false jumps / threshold's prediction", None, _false_jump_ceiling,
         "false positives near what the threshold predicts for Gaussian differences: <= 1.5 plus "
         "K_SIGMA Poisson errors of the predicted count", ".3f", "n_diffs"),
)


def judge(res: dict) -> list[dict]:
    """Each goal of :data:`GOALS` whose figure ``res`` holds: value, bounds, met (None: no sample)."""
    checks = []
    for goal in GOALS:
        if goal.figure not in res:
            continue
        value = res[goal.figure]
        low = goal.low(res) if goal.low else None
        high = goal.high(res) if goal.high else None
        applies = goal.needs is None or res.get(goal.needs, 0) > 0
        met = None
        if applies:
            met = bool(value is not None and np.isfinite(value)
                       and (low is None or value >= low) and (high is None or value <= high))
        checks.append({"figure": goal.figure, "label": goal.label, "value": value, "low": low,
                       "high": high, "met": met, "goal": _goal_text(goal, low, high),
                       "reason": goal.reason})
    return checks


def _goal_text(goal: Goal, low, high) -> str:
    f = goal.fmt.lstrip("+")
    if low is None:
        return f"<= {high:{f}}"
    if high is None:
        return f">= {low:{f}}"
    if np.isclose(low, -high):
        return f"|x| <= {high:{f}}"
    return f"{low:{f}} - {high:{f}}"


# --------------------------------------------------------------------------- identity
def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_identity(obs_dir: str | Path, kinds=("bcd", "bunc", "bmask", "bbmsk")) -> list[str]:
    """Check that every product in ``obs_dir/bcd`` was made from ``obs_dir/raw``; return the BCD stems.

    Raises ValueError (one line naming the product) when a product lacks
    ``RAWFILE``/``RAWSHA1``, names a raw file of another DCE, or its raw file
    is missing or differs from the one it was made from.
    """
    obs = Path(obs_dir)
    digests: dict[str, str] = {}
    stems = []
    for kind in kinds:
        for path in sorted((obs / "bcd").glob(f"*_{kind}.fits")):
            stem = path.name[: -len(f"_{kind}.fits")]
            hdr = fits.getheader(path)
            raw_name, sha = hdr.get("RAWFILE"), hdr.get("RAWSHA1")
            if raw_name is None or sha is None:
                raise ValueError(f"{path}: no {'RAWFILE' if raw_name is None else 'RAWSHA1'} card, "
                                 "so its raw input cannot be identified (reprocess it with this "
                                 "version)")
            if raw_name != f"{stem}_raw.fits":
                raise ValueError(f"{path}: made from {raw_name}, not {stem}_raw.fits")
            raw = obs / "raw" / raw_name
            if raw_name not in digests:
                if not raw.is_file():
                    raise ValueError(f"{path}: its raw file {raw} is missing")
                digests[raw_name] = _sha1(raw)
            if digests[raw_name] != str(sha).strip().lower():
                raise ValueError(f"{path}: made from another {raw_name} (RAWSHA1 {str(sha)[:10]}..., "
                                 f"raw file now {digests[raw_name][:10]}...): reprocess with "
                                 "--overwrite")
            if kind == "bcd":
                stems.append(stem)
    return stems


# --------------------------------------------------------------------------- scoring
def truth_band(obs_dir: str | Path) -> int:
    """Band of a simulated observation, from the configuration in its truth file."""
    path = Path(obs_dir) / "truth.h5"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (run `mips simulate` first)")
    with h5py.File(path, "r") as truth:
        return int(tomllib.loads(truth.attrs["config"])["band"])


def _robust_sigma(x) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if len(x) else float("nan")


def _median(x) -> float:
    return float(np.median(x)) if len(x) else float("nan")


def _read_set(obs: Path, name: str, mask_kind: str):
    """(bcd, bunc, mask) of one DCE as float, float, int arrays (FileNotFoundError if one is missing)."""
    out = []
    for kind in ("bcd", "bunc", mask_kind):
        path = obs / "bcd" / product_name(name, kind)
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing beside {product_name(name, 'bcd')}")
        out.append(fits.getdata(path))
    return out[0].astype(float), out[1].astype(float), out[2].astype(np.int64)


def _bad_bits(band: int) -> int:
    if band == 24:
        from .validate_si import SI_BAD
        return SI_BAD
    return GE_FATAL


def score_bcds(obs: Path, truth: h5py.File, names: list[str], *, band: int,
               expected: int, map_errors: Callable | None = None) -> dict:
    """BCD-level figures of the DCEs ``names`` (those with a BCD on disk), see the module notes.

    ``expected`` is the number of BCDs the observation should have (the good
    fraction's denominator, with the pixels truth's pmask calls usable).
    ``map_errors(read_header)`` gives, for a BCD (``read_header()`` returns its
    header, read only if needed), ``(relative error, error in MJy/sr, group)``:
    the per-pixel errors of the product maps, which ``_bunc`` carries but which
    BCDs of one group share (Ge: ILLUM and dark, every BCD; 24 um: the flat of
    its scan-mirror position and the dark of its DCENUM), from :func:`map_errors`.
    """
    usable = (truth["detector/pmask"][()] & PMASK_FATAL) == 0
    bad_bits = _bad_bits(band)
    pull_sum = np.zeros(usable.shape)
    pull_n = np.zeros(usable.shape, dtype=np.int64)
    indep_var = np.zeros(usable.shape)       # sum over DCEs of (1 - r^2), r = shared part / bunc
    shared: dict = {}                        # per group of BCDs sharing map errors: sum of r
    pulls, t_s, cal, dce, rel_unc, cal_noise = [], [], [], [], [], []
    for name in names:
        bcd, unc, mask = _read_set(obs, name, _MASK_KIND[band])
        sky = truth["dce"][name]["sky_mjysr"][()]
        with np.errstate(invalid="ignore", divide="ignore"):
            good = ((mask & bad_bits) == 0) & np.isfinite(bcd) & np.isfinite(unc) & (unc > 0)
            pull = np.where(good, (bcd - sky) / np.where(good, unc, 1.0), 0.0)
        pulls.append(pull[good])
        rel_unc.append(_median((unc / np.abs(bcd))[good]))
        pull_sum += np.clip(pull, -PULL_CLIP, PULL_CLIP)
        pull_n += good
        r, group = np.zeros(bcd.shape), None
        if map_errors is not None:
            bcd_path = obs / "bcd" / product_name(name, "bcd")
            rel, absolute, group = map_errors(lambda: fits.getheader(bcd_path))
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.where(good, np.hypot(bcd * rel, absolute) / unc, 0.0)
            r = np.clip(np.nan_to_num(r), 0.0, 1.0)
        indep_var += np.where(good, 1.0 - r ** 2, 0.0)
        shared[group] = shared.get(group, 0.0) + r
        cal.append(_median((bcd / sky - 1)[good]))
        with np.errstate(invalid="ignore", divide="ignore"):     # that median's own noise
            cal_noise.append(1.2533 * _median((unc / np.abs(sky))[good]) / np.sqrt(max(good.sum(), 1)))
        t_s.append(float(truth["dce"][name].attrs["t_start_s"]))
        dce.append(name)
    pull = np.concatenate(pulls) if pulls else np.zeros(0)
    seen = pull_n > 0
    bias = np.full(usable.shape, np.nan)
    shared_var = sum(np.square(r) for r in shared.values()) if shared else np.zeros(usable.shape)
    bias[seen] = pull_sum[seen] / np.sqrt(indep_var[seen] + shared_var[seen])
    worst = np.unravel_index(np.nanargmax(np.abs(bias)), bias.shape) if seen.any() else None
    cal_a = np.array([c for c in cal if np.isfinite(c)])
    return {
        "n_bcd": len(names), "n_bcd_expected": int(expected), "n_pixels": int(pull.size),
        "good_fraction": pull.size / max(expected * int(usable.sum()), 1),
        "bcd_pull_median": _median(pull),
        "bcd_rel_unc_median": _median(np.array(rel_unc)),
        "bcd_pull_spread": _robust_sigma(pull),
        "bcd_pull_outlier_fraction": float(np.mean(np.abs(pull) >= 5)) if pull.size else float("nan"),
        "bcd_pull_histogram": {"edges": PULL_EDGES.tolist(),
                               "counts": np.histogram(pull, PULL_EDGES)[0].tolist()},
        "n_bias_pixels": int(seen.sum()),
        "pixel_bias_spread": float(bias[seen].std()) if seen.sum() > 1 else float("nan"),
        "pixel_bias_robust_spread": _robust_sigma(bias[seen]),
        "pixel_bias_worst": (None if worst is None else
                             {"y": int(worst[0]), "x": int(worst[1]), "bias": float(bias[worst]),
                              "n": int(pull_n[worst])}),
        "pixel_bias_map": [[None if not np.isfinite(v) else round(float(v), 4) for v in row]
                           for row in bias],
        "cal_error_mean": float(cal_a.mean()) if cal_a.size else float("nan"),
        "cal_error_rms": float(np.sqrt(np.mean(cal_a ** 2))) if cal_a.size else float("nan"),
        "cal_error_noise_rms": _rms(np.array(cal_noise)),
        "cal_error_series": {"t_s": t_s, "dce": dce, "cal_error": cal},
    }


def truth_bands(obs_dir: str | Path) -> list[int] | None:
    """Bands of a multi-array observation (``mips simulate --band all``), None for one array."""
    path = Path(obs_dir) / "truth.h5"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (run `mips simulate` first)")
    with h5py.File(path, "r") as truth:
        return [int(b) for b in truth.attrs["bands"]] if "bands" in truth.attrs else None


class ArrayTruth:
    """One array's view of a multi-array ``truth.h5``: ``dce/...`` and ``sources`` as they are,
    every other path (``detector/pmask``...) under ``bands/<band>/``, the attributes that array's.
    What the scoring functions read of a single-array truth file, so they serve both."""

    def __init__(self, h5: h5py.File, band: int):
        self.h5, self.band = h5, int(band)
        self.attrs = h5[f"bands/{self.band}"].attrs

    def _path(self, key: str) -> str:
        key = key.lstrip("/")
        return key if key.split("/")[0] in ("dce", "sources") else f"bands/{self.band}/{key}"

    def __getitem__(self, key: str):
        return self.h5[self._path(key)]

    def __contains__(self, key: str) -> bool:
        return self._path(key) in self.h5


def validate(obs_dir: str | Path) -> dict:
    """Figures of merit of ``obs_dir`` and their goals (``res['checks']``; see the module notes).

    A multi-array observation (``mips simulate --band all``) is scored array by array,
    each against its goals: ``res['channels']`` holds each band's figures (keys "24",
    "70", "160": those with BCDs), ``res['goals_met']`` whether every array met all.

    Raises FileNotFoundError when the truth or the products are missing and
    ValueError when a product was not made from this folder's raw files.
    """
    obs = Path(obs_dir)
    bands = truth_bands(obs)
    stems = set(check_identity(obs))
    if bands is None:
        band = truth_band(obs)
        with h5py.File(obs / "truth.h5", "r") as truth:
            return _validate_array(obs, truth, band, stems, stems)
    channels = {}
    with h5py.File(obs / "truth.h5", "r") as truth:
        for band in bands:
            prefix = f"SPITZER_M{_CHANNEL[band]}_"
            own = {s for s in stems if s.startswith(prefix)}
            if own:
                channels[str(band)] = _validate_array(obs, ArrayTruth(truth, band), band, own, stems,
                                                      prefix=prefix)
    if not channels:
        raise FileNotFoundError(f"{obs / 'bcd'}: no BCDs to validate (run `mips reprocess --band "
                                f"all` first)")
    return {"observation": str(obs), "bands": [int(b) for b in channels], "channels": channels,
            "goals_met": all(r["goals_met"] for r in channels.values())}


_CHANNEL = {24: 1, 70: 2, 160: 3}


def _validate_array(obs: Path, truth, band: int, stems: set, all_stems: set, *,
                    prefix: str = "") -> dict:
    """The figures of one array: ``stems`` its BCDs (``all_stems`` the folder's), ``truth`` its
    truth (the file, or an :class:`ArrayTruth`), ``prefix`` its DCE names' (multi-array)."""
    names = sorted((n for n in truth["dce"] if n.startswith(prefix)),
                   key=lambda n: truth["dce"][n].attrs["t_start_s"])
    unknown = all_stems - set(truth["dce"])
    if unknown:
        raise ValueError(f"{obs / 'bcd' / product_name(sorted(unknown)[0], 'bcd')}: "
                         f"no such DCE in {obs / 'truth.h5'}")
    if band == 24:
        expected = [n for n in names if int(truth["dce"][n].attrs["dcenum"]) >= 1]
    else:
        expected = [n for n in names if not truth["dce"][n].attrs["stim"]]
    scored = [n for n in names if n in stems]
    if not scored:
        raise FileNotFoundError(f"{obs / 'bcd'}: no BCDs to validate (run `mips reprocess` first)")
    header = fits.getheader(obs / "bcd" / product_name(scored[0], "bcd"))
    res = {"observation": str(obs), "band": band, **_fluxconv_error(header),
           **score_bcds(obs, truth, scored, band=band, expected=len(expected),
                        map_errors=map_errors(header, band))}
    if band == 24:
        from .validate_si import si_diagnostics
        res.update(si_diagnostics(obs, truth, res))
    else:
        res.update(_ramp_figures(obs, truth, names, band=band))
    return rejudge(res)


def map_errors(header: fits.Header, band: int) -> Callable | None:
    """Per-pixel product errors that BCDs share, from the products the BCD header's ``CALFILE``
    names: a function of a BCD's header reader giving ``(relative error, error in MJy/sr, group)``
    (:func:`score_bcds`), or None when the product set states no map errors (or the BCDs were
    made from products given in memory).

    Ge: ``(ILLUM_ERR / ILLUM, FLUXCONV / ILLUM * DARK_ERR)``, one group.  24 um: the flat's
    relative error at the BCD's scan-mirror position (``CSM_PRED``) and the dark's error for
    its DCENUM times FLUXCONV / flat, grouped by (flat plane, dark plane).
    """
    path = str(header.get("CALFILE", "")).strip()
    if not path:
        return None
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: calibration products named by the BCDs' CALFILE are missing")
    if band == 24:
        return _si_map_errors(load_si_products(path))
    prod = load_products(band, path)
    if not {"illum", "dark"} & set(prod.errors):
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        shared = (np.asarray(prod.error("illum")) / prod.illum,
                  prod.fluxconv / prod.illum * np.asarray(prod.error("dark")), 0)
    return lambda _read_header: shared       # the same for every BCD: no header needed


def _si_map_errors(prod) -> Callable | None:
    """24 um :func:`map_errors`: flat and dark errors by scan-mirror position and DCENUM."""
    if not {"flats", "dark"} & set(prod.errors):
        return None
    flats_err = np.broadcast_to(np.asarray(prod.error("flats"), dtype=float), prod.flats.shape)
    dark_err = np.broadcast_to(np.asarray(prod.error("dark"), dtype=float), prod.dark.shape)

    def for_bcd(read_header):
        header = read_header()
        plane = int(np.argmin(np.abs(prod.csm_arcsec - float(header.get("CSM_PRED", 0.0)))))
        dplane = min(int(header.get("DCENUM", 0)), len(prod.dark) - 1)
        flat = prod.flats[plane]
        with np.errstate(invalid="ignore", divide="ignore"):
            return flats_err[plane] / flat, prod.fluxconv / flat * dark_err[dplane], (plane, dplane)
    return for_bcd


def _fluxconv_error(header: fits.Header) -> dict:
    """The FLUXCONV's relative 1-sigma error the BCDs state (``FLUXERR``; 0 if none)."""
    fc, err = header.get("FLUXCONV"), header.get("FLUXERR", 0.0)
    return {"fluxconv_rel_err": float(err) / float(fc) if fc else 0.0}


def rejudge(res: dict) -> dict:
    """Set ``res['checks']`` and ``res['goals_met']`` from the figures ``res`` holds now; returns ``res``."""
    res["checks"] = judge(res)
    res["goals_met"] = all(c["met"] is not False for c in res["checks"])
    return res


def _ramp_figures(obs: Path, truth: h5py.File, names: list[str], *, band: int) -> dict:
    """Slope pulls and jump figures of every DCE from ``bcd/ramps.h5`` (written with the BCDs;
    ``ramps_M<ch>.h5`` in a multi-array folder, :func:`reprocess.io.find_ramps`)."""
    path = find_ramps(obs / "bcd", band)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (reprocess writes it beside the BCDs)")
    with h5py.File(path, "r") as ramps:
        missing = [n for n in names if n not in ramps["dce"]]
        if missing:
            raise ValueError(f"{path}: holds no ramps of {missing[0]} (made from other raw files?)")
        rn = truth["detector/read_noise_dn"][()]
        excess = truth["detector/excess_noise_dn2_s"][()] if "detector/excess_noise_dn2_s" in truth else 0.0
        good = (truth["detector/pmask"][()] & PMASK_FATAL) == 0
        threshold = float(ramps.attrs["jump_threshold"])
        predicted = float(ramps.attrs["false_jump_rate"])
        pulls, resid, errs, jump_rows, fp, ndiff = [], [], [], [], 0, 0
        for name in names:
            t, r = truth["dce"][name], ramps["dce"][name]
            slope, err, true = r["slope_dn_s"][()], r["slope_err_dn_s"][()], t["slope_dn_s"][()]
            # the truth is the slope over the whole DCE: a ramp cut short by saturation measured
            # only its first part, where responsivity steps and drift make it differ
            whole = r["first_unusable_read"][()] >= r["jumps"].shape[0]
            ok = good & np.isfinite(slope) & whole
            pulls.append(((slope - true) / err)[ok])
            if not t.attrs.get("stim", False):
                resid.append((slope - true)[ok])
                errs.append(err[ok])
            rows, n_fp, n_d = _score_jumps(t, r, rn, excess, good)
            jump_rows.append(rows)
            fp += n_fp
            ndiff += n_d
    pull = np.concatenate(pulls)
    core = pull[np.abs(pull) < 5]
    jumps = np.concatenate(jump_rows) if jump_rows else np.zeros((0, 2))
    completeness = _completeness(jumps)
    return {
        "n_ramps": int(pull.size),
        "pull_median": _median(pull),
        "pull_spread": _robust_sigma(pull),
        "pull_std_core": float(core.std()),
        "chi2_dof": float(np.mean(core ** 2)),
        "pull_outlier_fraction": float(np.mean(np.abs(pull) >= 5)),
        # slope noise of the sky DCEs (DN/s): scatter against the truth, and the fit's own error
        "slope_noise_dn_s": _robust_sigma(np.concatenate(resid)) if resid else float("nan"),
        "slope_err_median_dn_s": _median(np.concatenate(errs)) if errs else float("nan"),
        "pull_histogram": {"edges": PULL_EDGES.tolist(),
                           "counts": np.histogram(pull, PULL_EDGES)[0].tolist()},
        "jump_threshold_sigma": threshold,
        "jump_completeness": completeness,
        "jump_completeness_above8": completeness[-1]["completeness"],
        "n_jumps_above8": completeness[-1]["n"],
        "false_jumps_per_diff": fp / max(ndiff, 1),
        "false_jumps_predicted_per_diff": predicted,
        "false_jump_ratio": (fp / max(ndiff, 1)) / predicted if predicted > 0 else float("nan"),
        "n_false_jumps": int(fp),
        "n_diffs": int(ndiff),
    }


def _score_jumps(t, r, rn, excess, good):
    """Truth jumps (amplitude / sigma_d, found?) and false positives of one DCE; ``sigma_d`` is a
    difference's noise: read noise twice, shot noise and excess noise (``excess``, DN^2/s)."""
    jumps = r["jumps"][()]
    first = r["first_unusable_read"][()]
    nreads = jumps.shape[0]
    nramps = int(r.attrs.get("nramps", 1))
    dt = float(t.attrs["read_time_s"])
    gain = float(t.attrs["gain_e_per_dn"])
    true = t["slope_dn_s"][()]
    sig_d = np.sqrt(2 * rn ** 2 + np.maximum(true, 0) * dt / gain + excess * dt)
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


# --------------------------------------------------------------------------- report
def _fmt(value, fmt: str) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:{fmt}}"


def format_report(res: dict) -> str:
    """A plain-text table: every scored figure with its goal, then the diagnostics (per array
    for a multi-array observation, then one line: whether every array met its goals)."""
    if "channels" in res:
        missed = [f"{b} um" for b, r in res["channels"].items() if not r["goals_met"]]
        return "\n\n".join([format_report(r) for r in res["channels"].values()] + [
            f"{len(res['channels'])} arrays scored: " + (f"goals MISSED at {', '.join(missed)}"
                                                        if missed else "every array met all its goals")])
    fmts = {g.figure: g.fmt for g in GOALS}
    status = {True: "met", False: "MISSED", None: "n/a (no sample)"}
    lines = [f"Validation of {res['observation']} ({res['band']} um): {res['n_bcd']} BCDs of "
             f"{res['n_bcd_expected']} expected, each made from this folder's raw file (RAWSHA1)",
             f"  {'figure':<38} {'value':>10}   {'goal':<22} status"]
    for c in res["checks"]:
        lines.append(f"  {c['label']:<38} {_fmt(c['value'], fmts[c['figure']]):>10}   "
                     f"{c['goal']:<22} {status[c['met']]}")
    lines.append("  diagnostics (no goal):")
    lines.append(f"    BCD pulls scored {res['n_pixels']}; beyond 5 sigma "
                 f"{_fmt(res['bcd_pull_outlier_fraction'], '.2e')}; per-pixel bias robust spread "
                 f"{_fmt(res['pixel_bias_robust_spread'], '.3f')} over {res['n_bias_pixels']} pixels")
    worst = res["pixel_bias_worst"]
    if worst:
        lines.append(f"    most biased pixel (y={worst['y']}, x={worst['x']}): "
                     f"sqrt(n) x mean pull {worst['bias']:+.2f} over {worst['n']} DCEs")
    if "n_ramps" in res:
        lines += _ramp_diagnostics(res)
    if res["band"] == 24:
        from .validate_si import format_diagnostics_si
        lines += format_diagnostics_si(res)
    missed = [c["label"] for c in res["checks"] if c["met"] is False]
    lines.append(f"  {len(res['checks']) - len(missed)} of {len(res['checks'])} goals met"
                 + (f"; MISSED: {', '.join(missed)}" if missed else ""))
    return "\n".join(lines)


def _ramp_diagnostics(res: dict) -> list[str]:
    lines = [f"    ramps scored {res['n_ramps']}; slope pull std within |pull|<5 "
             f"{res['pull_std_core']:.4f}, chi2/dof {res['chi2_dof']:.4f}, beyond 5 sigma "
             f"{res['pull_outlier_fraction']:.2e}",
             f"    slope noise of the sky DCEs: {res.get('slope_noise_dn_s', float('nan')):.2f} DN/s "
             f"(1.4826 MAD of slope - truth); median stated error "
             f"{res.get('slope_err_median_dn_s', float('nan')):.2f} DN/s",
             f"    false jumps {res['n_false_jumps']} of {res['n_diffs']} differences "
             f"({res['false_jumps_per_diff']:.3e}; threshold predicts "
             f"{res['false_jumps_predicted_per_diff']:.3e})",
             f"    jump completeness by amplitude (units of read-difference noise), threshold "
             f"{res['jump_threshold_sigma']} sigma:"]
    for row in res["jump_completeness"][:-1]:
        hi = "inf" if row["amp_hi"] > 1e8 else f"{row['amp_hi']:g}"
        lines.append(f"      [{row['amp_lo']:g}, {hi:>4}) n={row['n']:6d}  "
                     f"completeness={_fmt(row['completeness'], '.4f')}")
    return lines


def write_json(res: dict, path: str | Path) -> None:
    """Write the figures as JSON (atomically; NaN as null)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(res), indent=1))
    tmp.replace(path)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


# --------------------------------------------------------------------------- plot
def plot_pulls(ax, hist: dict, n: int, label: str) -> None:
    """Step histogram of pulls with the N(0, 1) expectation for ``n`` values (log scale)."""
    counts = np.array(hist["counts"])
    edges = np.array(hist["edges"])
    centers = 0.5 * (edges[1:] + edges[:-1])
    ax.step(centers, counts, where="mid", label=label)
    norm = n * (edges[1] - edges[0])
    ax.plot(centers, norm * np.exp(-0.5 * centers ** 2) / np.sqrt(2 * np.pi), "k--", label="N(0, 1)")
    if counts.any():
        ax.set_yscale("log")
        ax.set_ylim(0.5, None)
    ax.legend()


def plot_bias_map(fig, ax, res: dict) -> None:
    """Map of sqrt(n) x mean BCD pull per detector pixel (grey: never good)."""
    bias = np.array([[np.nan if v is None else v for v in row] for row in res["pixel_bias_map"]])
    lim = max(3.0, float(np.nanpercentile(np.abs(bias), 99))) if np.isfinite(bias).any() else 3.0
    cmap = __import__("matplotlib").colormaps["RdBu_r"].with_extremes(bad="0.7")
    im = ax.imshow(bias, origin="lower", cmap=cmap, vmin=-lim, vmax=lim, aspect="auto",
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, label="sqrt(n) x mean pull")
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)")
    ax.set_title(f"per-pixel bias: spread {_fmt(res['pixel_bias_spread'], '.2f')}")


def plot_bcd_pulls(ax, res: dict) -> None:
    """Histogram of the BCD pulls against N(0, 1)."""
    plot_pulls(ax, res["bcd_pull_histogram"], res["n_pixels"], "(BCD - sky) / bunc")
    ax.set_xlabel("BCD pull")
    ax.set_title(f"BCD pulls: median {_fmt(res['bcd_pull_median'], '+.3f')}, "
                 f"spread {_fmt(res['bcd_pull_spread'], '.3f')}")


def plot_cal_error(ax, res: dict) -> None:
    """Median BCD/sky - 1 of every DCE against time."""
    series = res["cal_error_series"]
    ax.plot(np.array(series["t_s"]) / 60.0, 100 * np.array(series["cal_error"], dtype=float), ".",
            label="BCDs as written")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("time since AOR start (min)")
    ax.set_ylabel("median BCD/sky - 1 (%)")
    ax.set_title(f"calibration error per DCE: RMS {_fmt(100 * res['cal_error_rms'], '.3f')} %")


def plot_paths(res: dict, path: str | Path) -> list[Path]:
    """Where :func:`plot_validation` writes: ``path``, or ``<stem>_<band>um<suffix>`` per array
    of a multi-array observation."""
    path = Path(path)
    if "channels" not in res:
        return [path]
    return [path.with_name(f"{path.stem}_{b}um{path.suffix}") for b in res["channels"]]


def plot_validation(res: dict, path: str | Path) -> None:
    """Slope and BCD pull histograms, per-pixel bias map, calibration error, jump completeness
    (one plot per array of a multi-array observation, at :func:`plot_paths`)."""
    if "channels" in res:
        for one, where in zip(res["channels"].values(), plot_paths(res, path)):
            plot_validation(one, where)
        return None
    if res.get("band") == 24:
        from .validate_si import plot_validation_si
        return plot_validation_si(res, path)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 3, figsize=(15, 8.4))
    plot_pulls(ax[0, 0], res["pull_histogram"], res["n_ramps"], "slope pulls")
    ax[0, 0].set_xlabel("(slope - truth) / error")
    ax[0, 0].set_title(f"slope pulls: median {res['pull_median']:+.3f}, spread {res['pull_spread']:.3f}")
    plot_bcd_pulls(ax[0, 1], res)
    plot_bias_map(fig, ax[0, 2], res)
    plot_cal_error(ax[1, 0], res)
    rows = [r for r in res["jump_completeness"][:-1] if r["n"]]
    mid = [np.sqrt(max(r["amp_lo"], 0.5) * min(r["amp_hi"], 100)) for r in rows]
    ax[1, 1].semilogx(mid, [r["completeness"] for r in rows], "o-")
    ax[1, 1].axvline(8, color="k", ls=":", label="8 sigma_d")
    ax[1, 1].axvline(res["jump_threshold_sigma"], color="r", ls=":", label="threshold")
    ax[1, 1].set_xlabel("jump amplitude / read-difference noise")
    ax[1, 1].set_ylabel("fraction found")
    ax[1, 1].set_title("jump completeness")
    ax[1, 1].legend()
    _plot_checks(ax[1, 2], res)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_checks(ax, res: dict) -> None:
    """The goals as a text panel (green met, red missed)."""
    ax.axis("off")
    colour = {True: "tab:green", False: "tab:red", None: "0.5"}
    fmts = {g.figure: g.fmt for g in GOALS}
    for i, c in enumerate(res["checks"]):
        ax.text(0, 1 - 0.09 * i, f"{c['label']}: {_fmt(c['value'], fmts[c['figure']])}  ({c['goal']})",
                color=colour[c["met"]], fontsize=8, transform=ax.transAxes, va="top")
