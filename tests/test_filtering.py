"""reprocess.filtering: exact results of the high-pass kernel on synthetic stacks, fbcd files."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from calibration.bitmask import BMASK
from reprocess.filtering import filter_observation, highpass, running_median, source_mask

N, NY, NX = 40, 8, 6
T = np.arange(N) * 4.7


def _background(seed: int = 0) -> np.ndarray:
    """A per-pixel constant background, different in every pixel."""
    rng = np.random.default_rng(seed)
    return np.broadcast_to(rng.uniform(5.0, 15.0, (NY, NX)), (N, NY, NX)).copy()


def test_column_offset_removed_exactly():
    col = np.linspace(-3.0, 4.0, NX)
    stack = _background() + col[None, None, :]
    out = highpass(stack, T, window_dces=7, n_sigma=None)
    np.testing.assert_allclose(out, 0.0, atol=1e-12)
    # the column filter alone removes the offsets: each column is then centred on 0
    out_col = highpass(col[None, None, :] + np.zeros((N, NY, NX)), T, window_dces=1,
                       n_sigma=None)
    np.testing.assert_allclose(out_col, 0.0, atol=1e-12)


def test_linear_drift_removed_exactly_and_edges():
    w, h = 7, 3
    slope = np.random.default_rng(1).uniform(-0.2, 0.2, (NY, NX))
    stack = _background() + T[:, None, None] * slope
    out = highpass(stack, T, window_dces=w, column=False, n_sigma=None)
    np.testing.assert_allclose(out[h:N - h], 0.0, atol=1e-11)
    # ends: the full-length window slides inward, so DCE i is compared with DCE h (or N-1-h)
    dt = T[1] - T[0]
    for i in range(h):
        np.testing.assert_allclose(out[i], (i - h) * dt * slope, atol=1e-11)
        j = N - 1 - i
        np.testing.assert_allclose(out[j], (h - i) * dt * slope, atol=1e-11)


def test_stack_shorter_than_window_uses_all_of_it():
    stack = np.arange(5.0)[:, None, None] * np.ones((5, 2, 3))
    med = running_median(stack, window_dces=9)
    np.testing.assert_allclose(med, 2.0)


def _source_stack():
    """Background + drift-free source staring at one pixel for 5 DCEs (a 'slow' source)."""
    stack = _background(2)
    src = np.zeros_like(stack)
    src[10:15, 4, 2] = 30.0
    src[10:15, 4, 3] = 12.0
    return stack + src, src


def test_masked_source_untouched():
    stack, src = _source_stack()
    out = highpass(stack, T, mask=src > 0, window_dces=7, column=False, n_sigma=None)
    np.testing.assert_allclose(out, src, rtol=0, atol=1e-12)


def test_masked_source_untouched_by_column_filter():
    # column medians unchanged by masking only if the column is uniform: offsets per
    # column that change from DCE to DCE, same in every row
    rng = np.random.default_rng(6)
    cols = rng.normal(0.0, 2.0, (N, 1, NX)) + np.zeros((N, NY, NX))
    _, src = _source_stack()
    out = highpass(cols + src, T, mask=src > 0, window_dces=7, n_sigma=None)
    np.testing.assert_allclose(out, src, rtol=0, atol=1e-12)


def test_unmasked_source_loses_flux_and_second_pass_restores_it():
    # a source passing slowly over one pixel: 7 DCEs, longer than half the 11-DCE window
    stack = _background(2)
    src = np.zeros_like(stack)
    src[10:17, 4, 2] = [6.0, 12.0, 20.0, 30.0, 20.0, 12.0, 6.0]
    one = highpass(stack + src, T, window_dces=11, column=False, n_sigma=None)
    assert one[src > 0].sum() < 0.8 * src.sum()
    two, used = highpass(stack + src, T, window_dces=11, column=False, n_sigma=3.0,
                         grow_pix=0.0, sigma=np.ones_like(stack), return_mask=True)
    assert used.sum() < (src > 0).sum()                 # the faint wings were not found ...
    np.testing.assert_allclose(two, src, rtol=0, atol=1e-12)   # ... and need not be


def test_source_mask_grows_by_a_disk():
    filt = np.zeros((3, 9, 9))
    filt[1, 4, 4] = 10.0
    m = source_mask(filt, n_sigma=3.0, grow_pix=1.5, sigma=np.ones_like(filt))
    assert not m[0].any() and not m[2].any()
    assert m[1].sum() == 9 and m[1, 3:6, 3:6].all()


def test_nan_and_masked_values_ignored():
    clean = _background(4)
    dirty = clean.copy()
    mask = np.zeros(clean.shape, bool)
    dirty[7, 1, 1] = 1e6
    mask[7, 1, 1] = True                               # masked garbage
    dirty[20:23, 2, 4] = np.nan                        # non-finite values
    dirty[:, 5, 0] = np.nan                            # a dead pixel
    out = highpass(dirty, T, mask=mask, window_dces=5, column=False, n_sigma=None)
    good = np.isfinite(dirty) & ~mask
    np.testing.assert_allclose(out[good], 0.0, rtol=0, atol=1e-12)
    assert np.isnan(out[~np.isfinite(dirty)]).all()
    # the masked value is still corrected (by its neighbours' median)
    np.testing.assert_allclose(out[7, 1, 1], 1e6 - clean[7, 1, 1], rtol=1e-12)
    # with the column filter, the masked garbage does not move the column medians either
    col = highpass(dirty, T, mask=mask, window_dces=5, n_sigma=None)
    ref = highpass(np.where(mask, np.nan, dirty), T, window_dces=5, n_sigma=None)
    np.testing.assert_allclose(col[good], ref[good], rtol=0, atol=1e-12)


def test_window_without_usable_values_takes_nearest_correction():
    stack = np.ones((9, 1, 1)) * 3.0
    mask = np.zeros(stack.shape, bool)
    mask[:5] = True                                    # first windows (length 3) all masked
    med = running_median(stack + np.arange(9.0)[:, None, None], mask=mask, window_dces=3)
    assert np.isfinite(med).all()
    # windows starting at 0..2 hold no usable value: DCEs 0..3 take DCE 4's median (of 5..6 -> 8)
    np.testing.assert_allclose(med[:5, 0, 0], 8.0)
    np.testing.assert_allclose(med[5, 0, 0], 8.5)


def test_gap_splits_the_running_median():
    times = np.concatenate([np.arange(10) * 4.7, 500 + np.arange(3) * 4.7])
    stack = np.concatenate([np.full((10, 2, 2), 1.0), np.full((3, 2, 2), 7.0)])
    split = highpass(stack, times, window_dces=9, column=False, n_sigma=None, max_gap_s=60)
    np.testing.assert_allclose(split, 0.0, atol=1e-12)
    joined = highpass(stack, times, window_dces=9, column=False, n_sigma=None)
    np.testing.assert_allclose(joined[10:], 6.0)       # the short piece judged by the long one


def test_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        highpass(np.zeros((5, 2, 2)), np.arange(5.0), window_dces=4)
    with pytest.raises(ValueError, match="increasing"):
        highpass(np.zeros((5, 2, 2)), np.array([0, 1, 1, 2, 3.0]))


# ---- files -------------------------------------------------------------------------------

def _write_obs(tmp: Path, n: int = 12, stim_at: int | None = None) -> Path:
    """A folder of tiny synthetic 70 um BCDs (4 x 4 pixels) with bunc/bmask products."""
    bcd = tmp / "obs" / "bcd"
    bcd.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(n):
        hdr = fits.Header({"CHNLNUM": 2, "MJD_OBS": 54000.0 + i * 4.7 / 86400,
                           "STIMFLSH": i == stim_at, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN",
                           "CRVAL1": 10.0, "CRVAL2": 0.0, "CRPIX1": 2.5, "CRPIX2": 2.5,
                           "CDELT1": -9.98 / 3600, "CDELT2": 9.98 / 3600, "PXSCAL2": 9.98})
        stem = bcd / f"SPITZER_M2_1_0000_{i:04d}_0"
        data = (5.0 + 0.01 * i + rng.normal(0, 0.01, (4, 4))).astype(np.float32)
        fits.PrimaryHDU(data, hdr).writeto(f"{stem}_bcd.fits")
        fits.PrimaryHDU(np.full((4, 4), 0.01, np.float32)).writeto(f"{stem}_bunc.fits")
        bits = np.zeros((4, 4), np.int32)
        bits[0, 0] = BMASK["PMASK"]
        fits.PrimaryHDU(bits).writeto(f"{stem}_bmask.fits")
    return tmp / "obs"


def test_fbcd_written_with_cards_and_refused_without_overwrite(tmp_path):
    obs = _write_obs(tmp_path, stim_at=3)
    rep = filter_observation(obs, window_dces=5)
    assert len(rep.written) == 11 and len(rep.skipped_stim) == 1
    assert not (obs / "bcd" / "SPITZER_M2_1_0000_0003_0_fbcd.fits").exists()
    first = obs / "bcd" / "SPITZER_M2_1_0000_0000_0_fbcd.fits"
    with fits.open(first) as hdul:
        h, data = hdul[0].header, hdul[0].data
    assert h["FILTERED"] is True and h["HPFWIN"] == 5 and h["CHNLNUM"] == 2
    assert h["MJD_OBS"] == fits.getheader(obs / "bcd" / "SPITZER_M2_1_0000_0000_0_bcd.fits")["MJD_OBS"]
    assert abs(np.nanmedian(data)) < 0.05
    before = first.read_bytes()
    with pytest.raises(FileExistsError) as err:
        filter_observation(obs, window_dces=7)
    assert "SPITZER_M2_1_0000_0000_0_fbcd.fits" in str(err.value)
    assert "\n" not in str(err.value)
    assert first.read_bytes() == before
    filter_observation(obs, window_dces=7, overwrite=True)
    assert fits.getheader(first)["HPFWIN"] == 7
    assert not list((obs / "bcd").glob("*.tmp"))


def test_column_filter_of_a_wholly_masked_dce_uses_its_own_values():
    # a DCE left out of the time median (e.g. after a stim flash) still gets its column filter
    stack = _background(7)
    stack[5] += np.linspace(0.0, 9.0, NX)[None, :]       # column offsets in that DCE only
    mask = np.zeros(stack.shape, bool)
    mask[5] = True
    out = highpass(stack, T, mask=mask, window_dces=7, n_sigma=None)
    ref = highpass(stack, T, window_dces=7, n_sigma=None)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out, 0.0, atol=1e-12)


def test_bad_bcds_refused_by_name(tmp_path):
    obs = _write_obs(tmp_path, n=4)
    odd = obs / "bcd" / "SPITZER_M2_1_0000_0002_0_bcd.fits"
    hdr = fits.getheader(odd)
    fits.PrimaryHDU(np.zeros((5, 4), np.float32), hdr).writeto(odd, overwrite=True)
    with pytest.raises(ValueError, match="SPITZER_M2_1_0000_0002_0_bcd.fits: unreadable"):
        filter_observation(obs)
    for kind in ("bunc", "bmask"):                     # consistent products, another shape
        stem = str(odd)[: -len("_bcd.fits")]
        fits.PrimaryHDU(np.zeros((5, 4), np.int32 if kind == "bmask" else np.float32)
                        ).writeto(f"{stem}_{kind}.fits", overwrite=True)
    with pytest.raises(ValueError, match="SPITZER_M2_1_0000_0002_0_bcd.fits: band/shape"):
        filter_observation(obs)
    hdr["CHNLNUM"] = 1
    fits.PrimaryHDU(np.zeros((5, 4), np.float32), hdr).writeto(odd, overwrite=True)
    with pytest.raises(ValueError, match="SPITZER_M2_1_0000_0002_0_bcd.fits: not a Ge"):
        filter_observation(obs)
    assert not list((obs / "bcd").glob("*_fbcd.fits"))


def test_source_found_in_a_wholly_masked_dce():
    rng = np.random.default_rng(8)
    filt = rng.normal(0.0, 1.0, (4, 16, 16))
    filt[2, 8, 8] = 50.0
    mask = np.zeros(filt.shape, bool)
    mask[2] = True                                     # e.g. the DCE after a stim flash
    m = source_mask(filt, n_sigma=10.0, grow_pix=0.0, mask=mask)
    assert m[2, 8, 8] and m.sum() == 1


def test_mips_filter_command_writes_fbcds_once(tmp_path, capsys):
    from mips.cli import main
    from mipssim.config import load_config
    from mipssim.observe import simulate
    from reprocess.pipeline import reprocess
    obs = tmp_path / "obs"
    simulate(load_config(band=70, seed=3, n_dce=12), obs)
    reprocess(obs)
    assert main(["filter", str(obs), "--window", "5"]) == 0
    written = sorted((obs / "bcd").glob("*_fbcd.fits"))
    assert len(written) == len(list((obs / "bcd").glob("*_bcd.fits")))
    assert fits.getval(written[0], "HPFWIN") == 5
    assert main(["filter", str(obs)]) == 2 and "exist" in capsys.readouterr().err
