"""reprocess.mosaic on synthetic 70 um BCDs with a known sky, offsets, noise and outliers."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_area

from calibration.bitmask import BMASK
from calibration.instrument import band_spec
from reprocess.io import InputError
from reprocess.mosaic import make_mosaic, solve_offsets

RA0, DEC0 = 150.0, 2.0
PIX = 9.98 / 3600            # deg, 70 um pixel
SIGMA = 0.05                 # MJy/sr, typical per-pixel noise
SOURCES = [(0.0, 0.0, 50.0), (-60.0, 45.0, 5.0), (70.0, -50.0, 3.0)]   # (dx", dy", peak MJy/sr)
SOURCE_SIGMA = 15.0          # arcsec
BRIGHT = SOURCES[0]


def true_sky(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Smooth sky plus Gaussian sources, MJy/sr, at (ra, dec) in degrees."""
    x = (ra - RA0) * np.cos(np.radians(DEC0)) * 3600
    y = (dec - DEC0) * 3600
    sky = 20.0 + 0.4 * x / 300 + 0.3 * np.sin(y / 150.0)
    for sx, sy, peak in SOURCES:
        sky = sky + peak * np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / (2 * SOURCE_SIGMA ** 2))
    return sky


def bcd_header(k: int, ra: float, dec: float, rot_deg: float) -> fits.Header:
    h = fits.Header()
    h["CHNLNUM"] = 2
    h["BUNIT"] = "MJy/sr"
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    h["CRVAL1"], h["CRVAL2"] = ra, dec
    h["CRPIX1"], h["CRPIX2"] = 16.5, 16.5
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    h["CD1_1"], h["CD1_2"] = -PIX * c, PIX * s
    h["CD2_1"], h["CD2_2"] = PIX * s, PIX * c
    h["A_ORDER"], h["B_ORDER"] = 2, 2
    h["A_2_0"], h["B_0_2"] = 2e-4, -1.5e-4
    h["DCENUM"] = k
    return h


def write_bcds(folder: Path, *, cosmic_rays: bool, seed: int = 7):
    """36 dithered BCDs; returns (paths, true offsets, cosmic-ray list)."""
    rng = np.random.default_rng(seed)
    cr_rng = np.random.default_rng(seed + 1)
    folder.mkdir(parents=True, exist_ok=True)
    shape = band_spec(70).shape
    offsets = rng.normal(0, 0.3, 36)
    offsets -= offsets.mean()
    paths, crs = [], []
    for k in range(36):
        ra = RA0 + ((k % 6) - 2.5) * 36 / 3600 / np.cos(np.radians(DEC0)) + rng.uniform(-5, 5) / 3600
        dec = DEC0 + ((k // 6) - 2.5) * 36 / 3600 + rng.uniform(-5, 5) / 3600
        header = bcd_header(k, ra, dec, rng.uniform(-20, 20))
        yy, xx = np.indices(shape)
        sky = true_sky(*WCS(header).all_pix2world(xx, yy, 0))
        unc = SIGMA * rng.uniform(0.8, 1.2, shape)
        data = sky + offsets[k] + rng.normal(0, 1, shape) * unc
        bits = np.zeros(shape, np.int32)
        bad = rng.integers(0, 32, (2, 3))
        bits[bad[0], bad[1]] = BMASK["PMASK"]
        data[bad[0], bad[1]] = 1e6                      # masked: must never contribute
        data[rng.integers(0, 32), rng.integers(0, 32)] = np.nan
        if cosmic_rays:
            for _ in range(4):
                y, x = cr_rng.integers(0, 32, 2)
                data[y, x] += cr_rng.uniform(2.0, 20.0)     # 40-400 sigma
                crs.append((k, y, x))
        stem = folder / f"SPITZER_M2_1_0000_{k:04d}_0"
        fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(f"{stem}_bcd.fits")
        fits.PrimaryHDU(unc.astype(np.float32), header=header).writeto(f"{stem}_bunc.fits")
        fits.PrimaryHDU(bits, header=header).writeto(f"{stem}_bmask.fits")
        paths.append(Path(f"{stem}_bcd.fits"))
    return paths, offsets, crs


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mosaic")
    clean, offsets, _ = write_bcds(root / "clean", cosmic_rays=False)
    hit, offsets_hit, crs = write_bcds(root / "hit", cosmic_rays=True)
    assert np.array_equal(offsets, offsets_hit)
    return {"clean": clean, "hit": hit, "offsets": offsets, "crs": crs, "root": root}


@pytest.fixture(scope="module")
def mosaics(data):
    return {
        "clean_norej": make_mosaic(data["clean"], reject_sigma=None),
        "clean_rej": make_mosaic(data["clean"]),
        "hit_norej": make_mosaic(data["hit"], reject_sigma=None),
        "hit_rej": make_mosaic(data["hit"]),
    }


def truth_on(hdul: fits.HDUList) -> np.ndarray:
    wcs = WCS(hdul[0].header)
    yy, xx = np.indices(hdul[0].data.shape)
    return true_sky(*wcs.all_pix2world(xx, yy, 0))


def robust_std(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def test_solve_offsets_exact_on_noiseless_pairs():
    rng = np.random.default_rng(1)
    n = 200
    truth = rng.normal(0, 1, n)
    truth -= truth.mean()
    i = np.concatenate([np.arange(n - 1), rng.integers(0, n, 600)])
    j = np.concatenate([np.arange(1, n), rng.integers(0, n, 600)])
    keep = i != j
    i, j = i[keep], j[keep]
    weights = rng.uniform(0.5, 5.0, i.size)
    got, err = solve_offsets(i, j, truth[i] - truth[j], weights, n)
    print(f"\nsolve_offsets noiseless: max |error| {np.max(np.abs(got - truth)):.2e}")
    np.testing.assert_allclose(got, truth, atol=1e-9)
    assert abs(got.sum()) < 1e-9
    assert np.all(np.isfinite(err)) and np.all(err > 0)


def test_solve_offsets_rejects_a_bad_pair():
    n = 50
    truth = np.linspace(-1, 1, n)
    i = np.concatenate([np.arange(n - 1), np.arange(n - 2)])
    j = np.concatenate([np.arange(1, n), np.arange(2, n)])
    noise = 1e-3 * np.cos(np.arange(i.size) * 1.7)   # deterministic small noise
    off = truth[i] - truth[j] + noise
    off[10] += 5.0
    got, err = solve_offsets(i, j, off, np.full(i.size, 1e6), n)
    print(f"\nsolve_offsets with one 5000-sigma pair: max |error| {np.max(np.abs(got - truth)):.2e}")
    assert np.max(np.abs(got - truth)) < 5e-3


def test_background_offsets_recovered(mosaics, data):
    table = mosaics["clean_rej"]["INPUTS"].data
    pulls = (table["OFFSET"] - data["offsets"]) / table["OFFSET_ERR"]
    rms_err = np.sqrt(np.mean((table["OFFSET"] - data["offsets"]) ** 2))
    print(f"\noffsets: rms error {rms_err:.2e} MJy/sr (injected rms 0.3, noise {SIGMA}); "
          f"median stated error {np.median(table['OFFSET_ERR']):.2e}; pulls mean "
          f"{pulls.mean():+.2f} rms {np.sqrt(np.mean(pulls ** 2)):.2f} max |{np.abs(pulls).max():.2f}|; "
          f"sum of offsets {table['OFFSET'].sum():.1e}")
    assert abs(table["OFFSET"].sum()) < 1e-5          # float32 column; the mean is fixed
    assert np.sqrt(np.mean(pulls ** 2)) < 1.5
    assert np.abs(pulls).max() < 4.5
    assert rms_err < 0.1 * SIGMA


def source_distance(hdul: fits.HDUList) -> np.ndarray:
    """Distance (arcsec) of each mosaic pixel to the nearest source."""
    wcs = WCS(hdul[0].header)
    yy, xx = np.indices(hdul[0].data.shape)
    ra, dec = wcs.all_pix2world(xx, yy, 0)
    x, y = (ra - RA0) * np.cos(np.radians(DEC0)) * 3600, (dec - DEC0) * 3600
    return np.min([np.hypot(x - sx, y - sy) for sx, sy, _ in SOURCES], axis=0)


def test_mosaic_matches_truth(mosaics):
    hdul = mosaics["clean_rej"]
    cov = hdul["COV"].data
    # away from the sources: near them bilinear resampling of 10" samples of a 15" Gaussian
    # differs from the true profile by more than the noise (reported, not tested)
    good = (cov >= 3) & (source_distance(hdul) > 4 * SOURCE_SIGMA)
    truth = truth_on(hdul)
    pull_rms = robust_std(((hdul[0].data - truth) / hdul["UNC"].data)[good])
    n_indep = good.sum() / 6.2          # output pixels per input pixel area (9.98"/4")^2
    stat = 3 * 0.78 / np.sqrt(n_indep)  # 3 sigma of a MAD-based sigma from n values
    covered = cov >= 1
    flux_ratio = hdul[0].data[covered].sum() / truth[covered].sum()
    near = (cov >= 3) & (source_distance(hdul) < SOURCE_SIGMA)
    near_bias = np.median((hdul[0].data - truth)[near])
    print(f"\nmosaic - truth: robust rms / UNC {pull_rms:.3f} over {good.sum()} pixels (tolerance "
          f"1.1 +- {stat:.3f}); flux ratio over the footprint {flux_ratio:.6f}; within 1 source "
          f"sigma of a source median residual {near_bias:+.3f} MJy/sr")
    assert 1 / 1.1 - stat < pull_rms < 1.1 + stat
    assert abs(flux_ratio - 1) < 1e-3


def _outlier_figures(mosaics):
    clean_norej, clean_rej = mosaics["clean_norej"], mosaics["clean_rej"]
    hit_norej, hit_rej = mosaics["hit_norej"], mosaics["hit_rej"]
    unc = clean_rej["UNC"].data
    hit = np.abs(hit_norej[0].data - clean_norej[0].data) > 3 * unc
    left = hit & (np.abs(hit_rej[0].data - clean_rej[0].data) > 3 * unc)
    deep = clean_rej["COV"].data >= 3
    far = source_distance(clean_rej) > 4 * SOURCE_SIGMA
    removed = {name: 1 - (left & sel).sum() / (hit & sel).sum()
               for name, sel in (("all", deep), ("off-source", deep & far))}
    print(f"\noutliers: {(hit & deep).sum()} mosaic pixels (coverage >= 3) hit by cosmic rays; "
          f"removed {removed['all']:.2%} ({removed['off-source']:.2%} off-source); rejected "
          f"BCD pixels {hit_rej['INPUTS'].data['REJECTED'].sum()} "
          f"(clean data: {clean_rej['INPUTS'].data['REJECTED'].sum()})")
    return removed


def test_outliers_removed(mosaics):
    assert _outlier_figures(mosaics)["all"] >= 0.99


@pytest.fixture(scope="module")
def rmasks(data):
    """Each BCD's rejection flags (by file name), with and without single-frame radhits."""
    out = {}
    for key in ("hit", "clean"):
        for radhit in (False, True):
            flags = {}
            make_mosaic(data[key], radhit=radhit,
                        on_rmask=lambda p, f, cards: flags.__setitem__(p.name, f))
            out[key, radhit] = flags
    return out


def test_cosmic_rays_flagged_in_the_bcd_frame(mosaics, data, rmasks):
    """Every injected hit (40-400 sigma) where >= 3 BCDs cover the sky is flagged in its own BCD,
    and with single-frame radhits also those covered by fewer; the clean data lose <= 2 pixels
    (36 x 1024 pixels at 5 sigma: 0.02 expected from noise)."""
    cov, wcs = mosaics["hit_rej"]["COV"].data, WCS(mosaics["hit_rej"][0].header)
    names = [p.name for p in data["hit"]]
    deep, flagged, flagged_radhit = [], [], []
    for k, y, x in data["crs"]:
        path = data["hit"][k]
        ox, oy = wcs.all_world2pix(*WCS(fits.getheader(path)).all_pix2world(x, y, 0), 0)
        deep.append(cov[int(np.round(oy)), int(np.round(ox))] >= 3)
        flagged.append(rmasks["hit", False][names[k]][y, x] != 0)
        flagged_radhit.append(rmasks["hit", True][names[k]][y, x] != 0)
    deep, flagged, flagged_radhit = map(np.array, (deep, flagged, flagged_radhit))
    false = {r: sum(int(np.count_nonzero(f)) for f in rmasks["clean", r].values()) for r in (False, True)}
    print(f"\ncosmic rays flagged: {flagged[deep].sum()}/{deep.sum()} at coverage >= 3, "
          f"{flagged.sum()}/{flagged.size} in all ({flagged_radhit.sum()} with radhits); clean data "
          f"flagged {false[False]} ({false[True]} with radhits)")
    assert flagged[deep].all()
    assert flagged_radhit.all()
    assert false[False] <= 2 and false[True] <= 2


def test_tile_size_bounds_the_reference_memory():
    """However many BCDs pile up on one spot, a tile's stacks stay within the memory budget."""
    from reprocess.mosaic.outliers import _BYTES_PER_VALUE, tile_size
    for depth in (10, 1000, 20000):
        boxes = np.tile([[0, 140, 0, 140]], (depth, 1))
        size = tile_size(boxes, (140, 140), memory_bytes=64e6)
        assert size >= 8 and (depth * size * size * 4 * _BYTES_PER_VALUE <= 64e6 or size == 8)
    assert tile_size(np.tile([[0, 140, 0, 140]], (20000, 1)), (140, 140), memory_bytes=64e6) < \
        tile_size(np.tile([[0, 140, 0, 140]], (10, 1)), (140, 140), memory_bytes=64e6)


def test_mosaic_independent_of_reference_tiling(data, mosaics, monkeypatch):
    """The outlier reference is an exact median per pixel: tiles of 8 pixels give the same mosaic."""
    import reprocess.mosaic as mosaic_pkg
    monkeypatch.setattr(mosaic_pkg, "REFERENCE_MEMORY_BYTES", 1.0)
    again = make_mosaic(data["hit"])
    a, b = io.BytesIO(), io.BytesIO()
    mosaics["hit_rej"].writeto(a)
    again.writeto(b)
    assert a.getvalue() == b.getvalue()


def test_resampling_matches_reproject(data):
    """The bilinear resampling (weights applied per plane) is reproject_interp's, on a BCD with no
    masked pixel."""
    from astropy.nddata import CCDData, StdDevUncertainty
    from reproject import reproject_interp

    from reprocess.mosaic.cutout import pixel_map, resample
    from reprocess.mosaic.grid import footprint_box, inspect_bcd
    out_wcs, shape = mosaic_grid_of(data["clean"])
    info = inspect_bcd(data["clean"][5])
    header = fits.getheader(info.path)
    rng = np.random.default_rng(3)
    image = true_sky(*WCS(header).all_pix2world(*np.indices(info.shape)[::-1], 0)) \
        + rng.normal(0, SIGMA, info.shape)
    ccd = CCDData(image, unit="MJy/sr", wcs=info.wcs,
                  uncertainty=StdDevUncertainty(np.full(info.shape, SIGMA)))
    box = footprint_box(info, out_wcs, shape)
    ours = resample(ccd, pixel_map(info.wcs, out_wcs, box, info.shape)).data
    theirs, _ = reproject_interp((image, info.wcs), out_wcs[box.slices], shape_out=box.shape,
                                 order="bilinear", roundtrip_coords=False)
    both = np.isfinite(ours) & np.isfinite(theirs)
    print(f"\nresampling vs reproject_interp: {both.sum()} pixels, max |difference| "
          f"{np.max(np.abs(ours[both] - theirs[both])):.2e} MJy/sr")
    assert np.array_equal(np.isfinite(ours), np.isfinite(theirs))
    assert np.max(np.abs(ours[both] - theirs[both])) < 1e-4


def mosaic_grid_of(paths):
    from reprocess.mosaic import mosaic_grid
    return mosaic_grid(paths)


def test_outlier_rejection_keeps_peak(mosaics):
    _outlier_figures(mosaics)
    clean_norej, hit_rej = mosaics["clean_norej"], mosaics["hit_rej"]
    wcs = WCS(clean_norej[0].header)
    x, y = wcs.all_world2pix(RA0 + BRIGHT[0] / 3600 / np.cos(np.radians(DEC0)),
                             DEC0 + BRIGHT[1] / 3600, 0)
    box = (slice(int(y) - 3, int(y) + 4), slice(int(x) - 3, int(x) + 4))
    peak_ref = clean_norej[0].data[box].max()
    peak_rej = hit_rej[0].data[box].max()
    print(f"\nbright-source peak {peak_rej:.3f} with outliers and rejection vs {peak_ref:.3f} "
          f"without either ({peak_rej / peak_ref - 1:+.3%}); true peak {20 + BRIGHT[2]:.1f} + sky slope")
    assert abs(peak_rej / peak_ref - 1) < 0.01


def test_masked_pixels_never_contribute(mosaics):
    for hdul in mosaics.values():
        assert np.nanmax(hdul[0].data) < 100


def test_deterministic(data, mosaics):
    again = make_mosaic(data["hit"])
    a, b = io.BytesIO(), io.BytesIO()
    mosaics["hit_rej"].writeto(a)
    again.writeto(b)
    assert a.getvalue() == b.getvalue()


def _copy_set(paths, folder: Path) -> list[Path]:
    folder.mkdir()
    for p in paths:
        for kind in ("bcd", "bunc", "bmask"):
            src = p.with_name(p.name.replace("_bcd.fits", f"_{kind}.fits"))
            shutil.copy(src, folder / src.name)
    return [folder / p.name for p in paths[:9]]


@pytest.mark.parametrize("problem", ["wcs", "shape"])
def test_bad_bcd_named_and_left_out(data, problem):
    paths = _copy_set(data["clean"], data["root"] / f"bad_{problem}")
    bad = paths[4]
    with fits.open(bad, mode="update") as hdul:
        if problem == "wcs":
            for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
                hdul[0].header[key] = 0.0
        else:
            hdul[0].data = hdul[0].data[:31]
    with pytest.raises(InputError) as exc:
        make_mosaic(paths)
    assert bad.name in str(exc.value)
    hdul = make_mosaic(paths, keep_going=True)
    history = "\n".join(str(h) for h in hdul[0].header["HISTORY"])
    assert hdul[0].header["NINPUT"] == len(paths) - 1
    assert hdul[0].header["NSKIPPED"] == 1
    assert f"left out {bad.name}" in history
    assert bad.name not in list(hdul["INPUTS"].data["BCD"])


def test_mips_mosaic_command_writes_once_and_refuses_to_overwrite(tmp_path, capsys):
    from mips.cli import main
    from mipssim.config import load_config
    from mipssim.observe import simulate
    from reprocess.pipeline import reprocess
    obs = tmp_path / "obs"
    simulate(load_config(band=70, seed=3, n_dce=12), obs)
    reprocess(obs)
    out = tmp_path / "m.fits"
    assert main(["mosaic", str(obs), "--out", str(out)]) == 0
    with fits.open(out) as hdul:
        assert hdul[0].header["BUNIT"] == "MJy/sr" and hdul[0].header["NINPUT"] == 10
        assert {"UNC", "COV"} <= {h.name for h in hdul}
        assert hdul["COV"].data.max() >= 2
    before = out.read_bytes()
    assert main(["mosaic", str(obs), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["mosaic", str(tmp_path / "none"), "--out", str(tmp_path / "n.fits")]) == 2


def _digest(folder: Path) -> dict:
    import hashlib
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_mips_mosaic_rmask_beside_each_bcd_only_when_asked(data, capsys):
    """--rmask writes <stem>_brmsk.fits (the rejected pixels' bits) beside every BCD, never touching
    the BCDs; an existing one is refused (before any work) without --overwrite."""
    from mips.cli import main
    from reprocess.mosaic import RMASK
    folder = data["root"] / "rmask_cli"
    _copy_set(data["hit"], folder)
    before = _digest(folder)
    assert main(["mosaic", str(folder), "--out", str(folder.parent / "plain.fits")]) == 0
    assert _digest(folder) == before                                   # no --rmask: nothing written
    assert main(["mosaic", str(folder), "--out", str(folder.parent / "r.fits"), "--rmask"]) == 0
    after = _digest(folder)
    assert {k: v for k, v in after.items() if k in before} == before  # inputs unchanged
    written = sorted(set(after) - set(before))
    assert written == sorted(n.replace("_bcd.", "_brmsk.") for n in before if n.endswith("_bcd.fits"))
    total = 0
    for name in written:
        with fits.open(folder / name) as hdul:
            bits = hdul[0].data
            assert bits.dtype == np.uint8 and bits.shape == band_spec(70).shape
            assert hdul[0].header["BRMSKN"] == np.count_nonzero(bits)
            assert hdul[0].header["BRMSKB1"] == "TEMPORAL"
            inphash = hdul[0].header["INPHASH"]
            total += np.count_nonzero(bits)
            assert not np.any(bits & ~np.uint8(sum(RMASK.values())))
    with fits.open(folder.parent / "r.fits") as hdul:
        assert total == hdul["INPUTS"].data["REJECTED"].sum() > 0
        assert inphash == hdul[0].header["INPHASH"]
    capsys.readouterr()
    again = folder.parent / "r2.fits"
    assert main(["mosaic", str(folder), "--out", str(again), "--rmask"]) == 2
    assert "_brmsk.fits: exists" in capsys.readouterr().err and not again.exists()
    assert main(["mosaic", str(folder), "--out", str(again), "--rmask", "--overwrite"]) == 0
    assert main(["mosaic", str(folder), "--out", str(folder.parent / "r3.fits"), "--rmask",
                 "--no-reject"]) == 2


def test_160um_bcds_either_side_of_the_blank_row_are_mosaicked(tmp_path):
    """The 160 um array's two rows sit either side of a blank (masked) one: normalised interpolation
    keeps what lies within half a pixel of each row (NaN propagation would lose everything)."""
    from mipssim.config import load_config
    from mipssim.observe import simulate
    from reprocess.pipeline import reprocess
    obs = tmp_path / "obs160"
    simulate(load_config(band=160, seed=4, n_dce=12), obs)
    reprocess(obs)
    hdul = make_mosaic(sorted((obs / "bcd").glob("*_bcd.fits")))
    covered = hdul["COV"].data > 0
    assert covered.sum() > 100 and np.isfinite(hdul[0].data[covered]).all()
    assert np.all(hdul["UNC"].data[covered] > 0)


def test_find_outliers_by_coverage():
    """The kernel on a flat 1-sigma field: a 20-sigma hit is a temporal outlier where 3 BCDs
    cover it; where 2 do it is a dual outlier (a spike above the other BCD); where 1 does, only
    radhit=True flags it -- the compact spike, not the core of a PSF-like source (sigma 1 pixel,
    30 sigma peak) whose neighbours are raised too."""
    from reprocess.mosaic import RMASK
    from reprocess.mosaic.outliers import find_outliers
    rng = np.random.default_rng(5)
    shape = (40, 60)
    data = rng.normal(0, 1, shape)
    unc, valid = np.ones(shape), np.ones(shape, bool)
    yy, xx = np.indices(shape)
    source = 30 * np.exp(-((yy - 20) ** 2 + (xx - 45) ** 2) / (2 * 1.0 ** 2))   # PSF sigma 1 px
    data += source
    hits = [(10, 10), (10, 30), (10, 50), (30, 30)]
    for y, x in hits:
        data[y, x] += 20
    coverage = np.where(xx < 20, 3, np.where(xx < 40, 2, 1))
    coverage[30:, :] = 2                                   # (30, 30): 2 BCDs; the source (20, 45): 1
    centre, variance, signal = source.copy(), np.full(shape, 0.1), source.copy()
    flags = {r: find_outliers(data, unc, valid, centre, variance, coverage, signal, k=5, radhit=r)
             for r in (False, True)}
    assert flags[False][10, 10] == RMASK["TEMPORAL"]
    assert flags[False][10, 30] == RMASK["DUAL"] and flags[False][30, 30] == RMASK["DUAL"]
    assert flags[False][10, 50] == 0 and flags[True][10, 50] == RMASK["RADHIT"]
    others = np.ones(shape, bool)
    for y, x in hits:
        others[y, x] = False
    assert not flags[True][others].any()        # neither noise nor the source's core
