"""Joint PRF photometry over BCDs (reprocess.photometry.joint): exact fits of noise-free BCDs through
real SIP distortions, the surface-brightness model against a supersampled sky, noisy pulls, position
refinement and bad input."""
from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.wcs import WCS

from calibration.bitmask import BMASK
from calibration.geometry import array_wcs
from calibration.instrument import ARCSEC2_PER_SR, band_spec
from calibration.psf import load_prf
from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.bcd import load_bcd
from reprocess.io import InputError
from reprocess.photometry.joint import FLAGS, FWHM_ARCSEC, LocalPRF, joint_photometry, local_pixel_geometry
from reprocess.pipeline import reprocess

IRS_HEADER = Path(__file__).parent / "data" / "ssc_irs_bcd_header.hdr"
RA0, DEC0 = 53.1, -27.8


def irs_wcs() -> WCS:
    """The real SSC header's celestial WCS (3rd-order SIP; pixel area varies by ~8 % over the array)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(fits.Header.fromfile(str(IRS_HEADER))).celestial


def offsets_to_radec(dx_arcsec, dy_arcsec, ra0=RA0, dec0=DEC0):
    return (ra0 + np.asarray(dx_arcsec) / 3600 / np.cos(np.deg2rad(dec0)),
            dec0 + np.asarray(dy_arcsec) / 3600)


def render(wcs, shape, ra, dec, flux_ujy, prfs, background):
    """Noise-free BCD of the documented model: background + F * P_local / Omega_local (MJy/sr)."""
    geo = local_pixel_geometry(wcs, ra, dec)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    image = np.full(shape, float(background))
    for j in range(len(ra)):
        frac = prfs[j](yy - geo.y[j], xx - geo.x[j], geo.sy_arcsec[j], geo.sx_arcsec[j])
        image += flux_ujy[j] * 1e-12 * frac / geo.omega_sr[j]
    return image


def ccd(image, unc, wcs, mask=None, name=None):
    meta = {"FILENAME": name} if name else {}
    return CCDData(image, unit=u.MJy / u.sr, wcs=wcs, uncertainty=StdDevUncertainty(unc),
                   mask=np.zeros(image.shape, bool) if mask is None else mask, meta=meta)


def prf70(t=100.0):
    return LocalPRF(load_prf(70, t, band_spec(70).pixel_arcsec), band_spec(70).pixel_arcsec)


def prf24():
    return LocalPRF(load_prf(24, 3000.0, band_spec(24).pixel_arcsec), band_spec(24).pixel_arcsec)


def field70(rng, n_bcd=12):
    """70 um BCDs with the simulator's SIP, dithered, rotated, dead right half masked, bad pixels."""
    shape = band_spec(70).shape
    frames = []
    for k in range(n_bcd):
        ra, dec = offsets_to_radec(*rng.uniform(-25, 25, 2))
        wcs = WCS(array_wcs(70, (ra, dec), 30.0 + 7 * k))
        mask = np.zeros(shape, bool)
        mask[:, 16:] = True                             # the dead readout half
        mask[rng.integers(0, 32, 4), rng.integers(0, 16, 4)] = True
        frames.append((wcs, mask, rng.uniform(0.5, 1.5, shape), rng.normal(10.0, 1.0)))
    return frames


FWHM70 = FWHM_ARCSEC[70]
# isolated sources, a pair at 1 FWHM (ratio 1), a pair at 0.5 FWHM (ratio 0.3), uJy
SOURCES70 = [(-50, -100, 4e5), (60, 110, 2e5), (0, 0, 3e5), (FWHM70, 0, 3e5),
             (-40, 40, 5e5), (-40 + 0.35 * FWHM70, 40 + 0.35 * FWHM70, 1.5e5)]


def test_local_prf_is_the_prf_at_its_own_scale_and_conserves_flux():
    prf = load_prf(70, 100.0, 9.98)
    local = LocalPRF(prf, 9.98)
    rng = np.random.default_rng(1)
    dy, dx = rng.uniform(-5, 5, (2, 500))
    assert np.array_equal(local(dy, dx, 9.98, 9.98), prf(dy, dx))
    yy, xx = np.mgrid[-40:41, -40:41]
    for sy, sx in ((9.0, 11.0), (12.0, 12.0)):      # pixels of other sizes still tile the PSF
        assert local(yy + 0.3, xx - 0.2, sy, sx).sum() == pytest.approx(1.0, abs=1e-9)


def test_pixel_solid_angle_is_the_area_of_the_pixels_corners_on_the_sky():
    """|det J| against the spherical quadrilateral through the pixel's four corners (SIP included),
    over the real header whose pixel area changes by ~8 %: a nominal pixel area would be wrong."""
    wcs = irs_wcs()
    xs = np.array([0.0, 20.0, 64.0, 107.0, 127.0, 5.3])
    ys = np.array([0.0, 100.0, 64.0, 30.0, 127.0, 77.7])
    ra, dec = wcs.all_pix2world(xs, ys, 0)
    geo = local_pixel_geometry(wcs, ra, dec)
    np.testing.assert_allclose(geo.x, xs, atol=1e-6)
    np.testing.assert_allclose(geo.y, ys, atol=1e-6)
    area = np.array([_corner_area_sr(wcs, x, y) for x, y in zip(xs, ys)])
    # corners joined by great circles instead of the SIP-curved edges: ~1e-6
    np.testing.assert_allclose(geo.omega_sr, area, rtol=3e-6)
    nominal = abs(np.linalg.det(wcs.pixel_scale_matrix)) * 3600 ** 2 / ARCSEC2_PER_SR
    assert np.ptp(geo.omega_sr / nominal) > 0.05


def _corner_area_sr(wcs, x, y):
    a, d = np.deg2rad(wcs.all_pix2world(np.array([x - .5, x + .5, x + .5, x - .5]),
                                        np.array([y - .5, y - .5, y + .5, y + .5]), 0))
    v = np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], -1)

    def triangle(p, q, r):
        return 2 * np.arctan2(abs(p @ np.cross(q, r)), 1 + p @ q + q @ r + r @ p)
    return triangle(v[0], v[1], v[2]) + triangle(v[0], v[2], v[3])


def test_noise_free_70um_bcds_are_fitted_back_exactly():
    """Rendered from the PRF model through the simulator's SIP WCS, with masks, per-BCD backgrounds
    and two blends (1 FWHM equal, 0.5 FWHM at 0.3): fluxes back to 1e-6."""
    rng = np.random.default_rng(2)
    dx, dy, flux = np.array(SOURCES70).T
    ra, dec = offsets_to_radec(dx, dy)
    prfs = [prf70()] * len(ra)
    bcds = [ccd(render(w, mask.shape, ra, dec, flux, prfs, bg), 0.1 * unc, w, mask)
            for w, mask, unc, bg in field70(rng)]
    out = joint_photometry(bcds, (ra, dec), band=70, temperature_k=100.0)
    np.testing.assert_allclose(out["flux"].to_value(u.uJy), flux, rtol=1e-6)
    assert np.all(out["flux_err"] > 0)
    assert list(out["group_size"]) == [1, 1, 2, 2, 2, 2]
    assert np.all((out["flags"][2:] & FLAGS["BLENDED"]) != 0)
    assert np.all(out["chi2_dof"] < 1e-10)


def test_noise_free_bcds_through_the_real_ssc_distortion_are_fitted_back_exactly():
    """The real header (pixel area up to 7 % off its reference value) with the 24 um PRF at its
    local pixel size; sources across the array, one partly off its edge."""
    wcs = irs_wcs()
    shape = (128, 128)
    xs = np.array([3.0, 20.0, 64.0, 107.0, 124.0, 60.0, 63.2, -1.5])
    ys = np.array([4.0, 100.0, 64.0, 30.0, 122.0, 10.0, 66.1, 50.0])
    ra, dec = wcs.all_pix2world(xs, ys, 0)
    flux = np.linspace(1e4, 5e4, xs.size)
    prfs = [prf24()] * xs.size
    rng = np.random.default_rng(3)
    unc = rng.uniform(0.01, 0.02, shape)
    bcds = [ccd(render(wcs, shape, ra, dec, flux, prfs, 20.0), unc, wcs)]
    out = joint_photometry(bcds, (ra, dec), band=24, temperature_k=3000.0)
    np.testing.assert_allclose(out["flux"].to_value(u.uJy), flux, rtol=1e-6)
    assert out["flags"][-1] & FLAGS["PARTIAL"]


def test_surface_brightness_model_matches_a_supersampled_sky_through_sip():
    """Independent of the module's model: each pixel is the mean surface brightness of a circular
    Gaussian source over 8x8 sub-pixels mapped to the sky through the full SIP WCS.  Fitting with
    the same Gaussian as PSF recovers the flux to the supersampling's accuracy (midpoint rule,
    (1/8)^2/24 of the curvature: a few 1e-4); the pixel area changes by up to 7 % here, so a nominal
    pixel area would be off by percents."""
    wcs = irs_wcs()
    sigma = 5.9 / 2.3548
    step = 0.1
    grid = (np.arange(301) - 150) * step
    psf = np.exp(-0.5 * (grid[:, None] ** 2 + grid[None, :] ** 2) / sigma ** 2)
    xs = np.array([5.0, 20.0, 64.0, 107.0, 120.0, 60.0]) + 0.3
    ys = np.array([5.0, 100.0, 64.0, 31.0, 120.0, 10.0]) - 0.2
    ra, dec = wcs.all_pix2world(xs, ys, 0)
    flux = np.full(xs.size, 1e6)
    image = np.full((128, 128), 2.0)
    sub = (np.arange(8) + 0.5) / 8 - 0.5
    for j in range(xs.size):
        y0, x0 = max(int(ys[j]) - 12, 0), max(int(xs[j]) - 12, 0)
        yy, xx = np.mgrid[y0:min(int(ys[j]) + 13, 128), x0:min(int(xs[j]) + 13, 128)]
        mean_sb = 0.0
        for oy in sub:
            for ox in sub:
                a, d = wcs.all_pix2world(xx + ox, yy + oy, 0)
                r = _separation_arcsec(ra[j], dec[j], a, d)
                mean_sb = mean_sb + np.exp(-0.5 * r ** 2 / sigma ** 2) / (2 * np.pi * sigma ** 2)
        image[y0:y0 + yy.shape[0], x0:x0 + yy.shape[1]] += \
            flux[j] * 1e-12 * ARCSEC2_PER_SR * mean_sb / sub.size ** 2
    bcd = ccd(image, np.full(image.shape, 0.01), wcs)
    out = joint_photometry([bcd], (ra, dec), band=24, psf=(psf, step))
    ratio = out["flux"].to_value(u.uJy) / flux
    np.testing.assert_allclose(ratio, 1.0, atol=1e-3)
    nominal = abs(np.linalg.det(wcs.pixel_scale_matrix)) * 3600 ** 2 / ARCSEC2_PER_SR
    geo = local_pixel_geometry(wcs, ra, dec)
    assert np.max(np.abs(geo.omega_sr / nominal - 1)) > 0.05


def _separation_arcsec(ra0, dec0, ra, dec):
    a0, d0, a, d = (np.deg2rad(v) for v in (ra0, dec0, ra, dec))
    h = np.sin(0.5 * (d - d0)) ** 2 + np.cos(d0) * np.cos(d) * np.sin(0.5 * (a - a0)) ** 2
    return np.rad2deg(2 * np.arcsin(np.sqrt(h))) * 3600


def test_noisy_pulls_and_chi2_follow_the_noise():
    """Gaussian noise of the stated uncertainty: pulls of isolated and blended sources have mean 0
    and spread 1, chi2/dof 1, within 4 sigma of their sampling errors."""
    rng = np.random.default_rng(4)
    frames = field70(rng, n_bcd=8)
    dx, dy, flux = np.array(SOURCES70).T
    flux = flux / 20                                  # S/N ~ 10-40
    ra, dec = offsets_to_radec(dx, dy)
    prfs = [prf70()] * len(ra)
    clean = [render(w, mask.shape, ra, dec, flux, prfs, bg) for w, mask, _, bg in frames]
    pulls, chi2 = [], []
    for _ in range(60):
        bcds = [ccd(img + rng.normal(0, 1, img.shape) * unc, unc, w, mask)
                for img, (w, mask, unc, _) in zip(clean, frames)]
        out = joint_photometry(bcds, (ra, dec), band=70, temperature_k=100.0)
        pulls.append((out["flux"].to_value(u.uJy) - flux) / out["flux_err"].to_value(u.uJy))
        chi2.append(out["chi2_dof"][[0, 1, 2, 4]])     # one per group
    pulls = np.concatenate(pulls)
    n = pulls.size
    assert abs(pulls.mean()) < 4 / np.sqrt(n)
    assert abs(pulls.std() - 1) < 4 / np.sqrt(2 * n)
    chi2 = np.concatenate(chi2)
    n_pix_dof = 8 * 40                                # ~dof per group: its spread is sqrt(2 / dof)
    assert abs(chi2.mean() - 1) < 4 * np.sqrt(2 / n_pix_dof / chi2.size) + 0.02


def test_position_refinement_recovers_offsets_and_fluxes():
    rng = np.random.default_rng(5)
    frames = field70(rng, n_bcd=10)
    dx, dy, flux = np.array(SOURCES70).T
    ra, dec = offsets_to_radec(dx, dy)
    prfs = [prf70()] * len(ra)
    clean = [render(w, mask.shape, ra, dec, flux, prfs, bg) for w, mask, _, bg in frames]
    guess = offsets_to_radec(dx + rng.uniform(-1.5, 1.5, dx.size), dy + rng.uniform(-1.5, 1.5, dx.size))
    bcds = [ccd(img, 0.1 * unc, w, mask) for img, (w, mask, unc, _) in zip(clean, frames)]
    out = joint_photometry(bcds, guess, band=70, temperature_k=100.0, refine_positions=True)
    np.testing.assert_allclose(out["flux"].to_value(u.uJy), flux, rtol=1e-6)
    off = _separation_arcsec(ra, dec, out["ra"].to_value(u.deg), out["dec"].to_value(u.deg))
    assert np.all(off < 1e-3 * band_spec(70).pixel_arcsec)     # the convergence criterion: 1e-3 pixel
    assert np.all((out["flags"] & FLAGS["NOT_CONVERGED"]) == 0)
    # noisy: the position errors describe the scatter (east and north pulls, 4 sigma of sampling)
    pulls = []
    for _ in range(25):
        noisy = [ccd(img + rng.normal(0, 1, img.shape) * unc, unc, w, mask)
                 for img, (w, mask, unc, _) in zip(clean, frames)]
        o = joint_photometry(noisy, (ra, dec), band=70, temperature_k=100.0, refine_positions=True)
        east = (o["ra"].to_value(u.deg) - ra) * 3600 * np.cos(np.deg2rad(dec))
        north = (o["dec"].to_value(u.deg) - dec) * 3600
        pulls += [east / o["ra_err"].to_value(u.arcsec), north / o["dec_err"].to_value(u.arcsec)]
    pulls = np.concatenate(pulls)
    assert abs(pulls.std() - 1) < 4 / np.sqrt(2 * pulls.size)


def test_bcd_files_and_ccddata_give_the_same_fluxes(tmp_path):
    rng = np.random.default_rng(6)
    dx, dy, flux = np.array(SOURCES70[:3]).T
    ra, dec = offsets_to_radec(dx, dy)
    prfs = [prf70()] * len(ra)
    paths, ccds = [], []
    for k, (w, mask, unc, bg) in enumerate(field70(rng, n_bcd=4)):
        image = render(w, mask.shape, ra, dec, flux, prfs, bg) + rng.normal(0, 0.1, mask.shape) * unc
        header = w.to_header(relax=True)
        header["CHNLNUM"] = 2
        header["BUNIT"] = "MJy/sr"
        stem = tmp_path / f"SPITZER_M2_1_0000_{k:04d}_0"
        bits = np.where(mask, BMASK["PMASK"], 0).astype(np.int32)
        fits.PrimaryHDU(image.astype(np.float32), header=header).writeto(f"{stem}_bcd.fits")
        fits.PrimaryHDU((0.1 * unc).astype(np.float32), header=header).writeto(f"{stem}_bunc.fits")
        fits.PrimaryHDU(bits, header=header).writeto(f"{stem}_bmask.fits")
        paths.append(Path(f"{stem}_bcd.fits"))
        ccds.append(ccd(image.astype(np.float32).astype(float), (0.1 * unc).astype(np.float32), w, mask))
    from_files = joint_photometry(paths, (ra, dec), band=70, temperature_k=100.0)
    from_objects = joint_photometry(ccds, (ra, dec), band=70, temperature_k=100.0)
    np.testing.assert_allclose(from_files["flux"].value, from_objects["flux"].value, rtol=1e-6)


def test_a_bcd_without_wcs_is_refused_naming_it(tmp_path):
    rng = np.random.default_rng(7)
    w, mask, unc, _ = field70(rng, n_bcd=1)[0]
    good = ccd(np.ones(mask.shape), unc, w, mask)
    nowcs = ccd(np.ones(mask.shape), unc, None, mask, name="SPITZER_M2_1_0000_0003_0_bcd.fits")
    with pytest.raises(InputError, match="SPITZER_M2_1_0000_0003_0_bcd.fits: no celestial WCS"):
        joint_photometry([good, nowcs], offsets_to_radec([0.0], [0.0]), band=70)
    stem = tmp_path / "SPITZER_M2_1_0000_0004_0"
    for kind in ("bcd", "bunc", "bmask"):
        fits.PrimaryHDU(np.ones((32, 32), np.float32)).writeto(f"{stem}_{kind}.fits")
    with pytest.raises(InputError, match=f"{stem}_bcd.fits: no celestial WCS"):
        joint_photometry([f"{stem}_bcd.fits"], offsets_to_radec([0.0], [0.0]), band=70)


def test_other_bad_bcds_are_refused_naming_them():
    rng = np.random.default_rng(8)
    w, mask, unc, _ = field70(rng, n_bcd=1)[0]
    pos = offsets_to_radec([0.0], [0.0])
    counts = CCDData(np.ones(mask.shape), unit=u.adu, wcs=w, uncertainty=StdDevUncertainty(unc),
                     meta={"FILENAME": "counts_bcd.fits"})
    with pytest.raises(InputError, match="counts_bcd.fits: unit adu is not a surface brightness"):
        joint_photometry([counts], pos, band=70)
    bare = CCDData(np.ones(mask.shape), unit=u.MJy / u.sr, wcs=w, meta={"FILENAME": "bare_bcd.fits"})
    with pytest.raises(InputError, match="bare_bcd.fits: no uncertainty"):
        joint_photometry([bare], pos, band=70)
    other = ccd(np.ones(mask.shape), unc, w, mask, name="m1_bcd.fits")
    other.meta["CHNLNUM"] = 1
    with pytest.raises(InputError, match="m1_bcd.fits: CHNLNUM=1 is not the 70 um array"):
        joint_photometry([other], pos, band=70)


def test_a_source_off_every_bcd_is_flagged_nan_and_the_others_unchanged():
    rng = np.random.default_rng(9)
    dx, dy, flux = np.array(SOURCES70[:3]).T
    ra, dec = offsets_to_radec(dx, dy)
    prfs = [prf70()] * len(ra)
    bcds = [ccd(render(w, mask.shape, ra, dec, flux, prfs, bg), unc, w, mask)
            for w, mask, unc, bg in field70(rng, n_bcd=5)]
    far_ra, far_dec = offsets_to_radec([3600.0], [0.0])
    out = joint_photometry(bcds, (np.r_[ra, far_ra], np.r_[dec, far_dec]), band=70,
                           temperature_k=100.0)
    assert np.isnan(out["flux"][3]) and np.isnan(out["flux_err"][3])
    assert out["flags"][3] & FLAGS["OFF_IMAGE"] and out["n_bcd"][3] == 0
    np.testing.assert_allclose(out["flux"][:3].to_value(u.uJy), flux, rtol=1e-6)
    # the dead half of the 70 um array: a source there is off every usable pixel
    w, mask, unc, bg = field70(rng, n_bcd=1)[0]
    dead_ra, dead_dec = w.all_pix2world([30.0], [16.0], 0)
    out = joint_photometry([ccd(np.full(mask.shape, bg), unc, w, mask)], (dead_ra, dead_dec), band=70,
                           fit_radius_fwhm=0.5)
    assert np.isnan(out["flux"][0]) and out["flags"][0] & FLAGS["OFF_IMAGE"]


def test_coincident_sources_are_degenerate_not_numbers():
    rng = np.random.default_rng(10)
    dx, dy, flux = np.array(SOURCES70[:2]).T
    ra, dec = offsets_to_radec(dx, dy)
    prfs = [prf70()] * len(ra)
    bcds = [ccd(render(w, mask.shape, ra, dec, flux, prfs, bg), unc, w, mask)
            for w, mask, unc, bg in field70(rng, n_bcd=5)]
    out = joint_photometry(bcds, (np.r_[ra, ra[0]], np.r_[dec, dec[0]]), band=70, temperature_k=100.0)
    assert np.isnan(out["flux"][0]) and np.isnan(out["flux"][2])
    assert out["flags"][0] & FLAGS["DEGENERATE"] and out["flags"][2] & FLAGS["DEGENERATE"]
    assert out["flux"][1].to_value(u.uJy) == pytest.approx(flux[1], rel=1e-6)


def test_sparse_and_dense_solves_agree(monkeypatch):
    """Components larger than DENSE_MAX go through sparse LU: same fluxes and errors."""
    from reprocess.photometry import joint
    rng = np.random.default_rng(11)
    dx, dy, flux = np.array(SOURCES70).T
    ra, dec = offsets_to_radec(dx, dy)
    prfs = [prf70()] * len(ra)
    bcds = [ccd(render(w, mask.shape, ra, dec, flux, prfs, bg) + rng.normal(0, 0.1, mask.shape) * unc,
                0.1 * unc, w, mask) for w, mask, unc, bg in field70(rng, n_bcd=6)]
    dense = joint_photometry(bcds, (ra, dec), band=70, temperature_k=100.0)
    monkeypatch.setattr(joint, "DENSE_MAX", 1)
    sparse_ = joint_photometry(bcds, (ra, dec), band=70, temperature_k=100.0)
    np.testing.assert_allclose(sparse_["flux"].value, dense["flux"].value, rtol=1e-9)
    np.testing.assert_allclose(sparse_["flux_err"].value, dense["flux_err"].value, rtol=1e-9)


def test_prf_box_equals_the_prf_pixel_by_pixel():
    """LocalPRF.box (shared pixel corners) gives LocalPRF's numbers, including the clamped edges."""
    local = prf70(25.0)
    rng = np.random.default_rng(12)
    for _ in range(5):
        y, x = rng.uniform(-3, 35, 2)
        sy, sx = rng.uniform(9.5, 10.5, 2)
        box = (slice(0, 32), slice(0, 32))
        yy, xx = np.mgrid[box]
        np.testing.assert_allclose(local.box(y, x, sy, sx, box), local(yy - y, xx - x, sy, sx),
                                   rtol=0, atol=1e-13)


def test_prf_box_gradient_is_the_derivative_by_the_source_position():
    local = prf70(100.0)
    box = (slice(0, 32), slice(0, 16))
    y, x, s = 14.3, 7.6, 9.9
    _, d_dy, d_dx = local.box(y, x, s, s, box, gradient=True)
    h = 1e-4      # inside one cell of the piecewise-bilinear integral image: exact differences
    np.testing.assert_allclose(d_dy, (local.box(y + h, x, s, s, box) - local.box(y - h, x, s, s, box)) / (2 * h),
                               atol=1e-9)
    np.testing.assert_allclose(d_dx, (local.box(y, x + h, s, s, box) - local.box(y, x - h, s, s, box)) / (2 * h),
                               atol=1e-9)


@pytest.fixture(scope="module")
def sim24(tmp_path_factory):
    """A small reprocessed 24 um observation: 25 sources of 2-20 mJy (S/N ~ 20-200) on a flat sky."""
    folder = tmp_path_factory.mktemp("joint24")
    simulate(load_config(band=24, n_dce=10, seed=4, blob_peak_mjysr=0.0, cirrus_contrast=0.0,
                         flux_min_jy=2e-3, flux_max_jy=2e-2), folder)
    reprocess(folder)
    return folder


def test_simulated_24um_fluxes_are_unbiased_with_honest_errors(sim24):
    """Simulate -> reprocess -> joint fit at the catalogue positions.  The reference for each source
    is the same fit of the noise-free sky the simulator recorded (truth.h5, same WCS, mask and
    weights) times the calibration's FLUXCONV ratio: it carries the simulator's own conventions
    (its nominal pixel solid angle, up to 0.4 % off the local one at 24 um), so the noisy fluxes
    must scatter around it with pulls of mean 0 and spread 1 (4 sigma of the sample), and around
    the catalogue within 1 %."""
    paths = sorted((sim24 / "bcd").glob("*_bcd.fits"))
    bcds = [load_bcd(p) for p in paths]
    with h5py.File(sim24 / "truth.h5", "r") as truth:
        src = truth["sources"][()]
        skies = [np.array(truth["dce"][p.name[:-len("_bcd.fits")]]["sky_mjysr"]) for p in paths]
    cal = float(bcds[0].meta["FLUXCONV"]) / 0.0454          # product / the simulator's
    clean = [CCDData(sky * cal, unit=u.MJy / u.sr, wcs=b.wcs, uncertainty=b.uncertainty, mask=b.mask)
             for sky, b in zip(skies, bcds)]
    pos = (src["ra"], src["dec"])
    out = joint_photometry(bcds, pos, band=24, temperature_k=src["temperature_k"])
    ref = joint_photometry(clean, pos, band=24, temperature_k=src["temperature_k"])
    flux, err = out["flux"].to_value(u.Jy), out["flux_err"].to_value(u.Jy)
    good = np.isfinite(flux) & (flux / err > 20) & (out["n_bcd"] >= 3)
    assert good.sum() >= 15
    pulls = (flux - ref["flux"].to_value(u.Jy))[good] / err[good]
    n = pulls.size
    assert abs(pulls.mean()) < 4 / np.sqrt(n)
    assert abs(pulls.std(ddof=1) - 1) < 4 / np.sqrt(2 * n)
    ratio = flux[good] / src["flux_jy_24"][good]
    assert abs(np.mean(ratio) - 1) < 0.01


def test_a_masked_pixel_under_a_source_is_flagged_and_the_rest_still_fits_it():
    rng = np.random.default_rng(13)
    dx, dy, flux = np.array(SOURCES70[:3]).T
    ra, dec = offsets_to_radec(dx, dy)
    prfs = [prf70()] * len(ra)
    bcds = []
    for w, mask, unc, bg in field70(rng, n_bcd=4):
        image = render(w, mask.shape, ra, dec, flux, prfs, bg)
        x, y = w.all_world2pix(ra[:1], dec[:1], 0)
        mask = mask.copy()
        mask[int(np.floor(y[0] + 0.5)), int(np.floor(x[0] + 0.5))] = True
        image[int(np.floor(y[0] + 0.5)), int(np.floor(x[0] + 0.5))] = 1e6     # masked: never used
        bcds.append(ccd(image, unc, w, mask))
    out = joint_photometry(bcds, (ra, dec), band=70, temperature_k=100.0)
    assert out["flags"][0] & FLAGS["MASKED_CORE"]
    assert not out["flags"][2] & FLAGS["MASKED_CORE"]
    np.testing.assert_allclose(out["flux"].to_value(u.uJy), flux, rtol=1e-6)
