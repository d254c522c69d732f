"""The 160 um near-IR leak: in the simulated scene (mipssim.scene) and flagged by the reprocessor."""
import dataclasses

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from calibration.bitmask import BMASK
from calibration.leak import LEAK_RATIO, LEAK_REFERENCE_K, leak_factor, predicted_leak_jy
from mips.cli import main
from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.io import InputError
from reprocess.leak import read_leak_catalog


def test_leak_law():
    assert leak_factor(LEAK_REFERENCE_K) == pytest.approx(LEAK_RATIO)   # the K giant, by definition
    assert leak_factor(100.0) < 1e-30 and leak_factor(1000.0) < 0.01    # cold sources: nothing
    assert leak_factor(2000.0) > 0.3 and leak_factor(10000.0) > LEAK_RATIO  # dominates when hot
    # the catalogue law agrees with the blackbody one: ghost of a 3000 K source from its 1.4 um flux
    from calibration.leak import LAMBDA_160_UM, LEAK_WAVELENGTH_UM, _bb_nu
    f160 = 2.0
    f14 = f160 * _bb_nu(LEAK_WAVELENGTH_UM, 3000.0) / _bb_nu(LAMBDA_160_UM, 3000.0)
    assert predicted_leak_jy(f14) == pytest.approx(f160 * leak_factor(3000.0))


@pytest.fixture(scope="module")
def hot160(tmp_path_factory):
    """A 160 um observation of one bright 3000 K source, with and without the leak (same seed)."""
    out = {}
    for leak in (True, False):
        d = tmp_path_factory.mktemp(f"leak{leak}")
        simulate(load_config(band=160, n_dce=24, seed=8, n_sources=0, bright_source_jy=1.0,
                             include_leak=leak), d)
        out[leak] = d
    return out


def test_the_ghost_is_in_the_sky_and_recorded(hot160):
    """The ghost is the source's own image times the leak factor (same PRF, same place)."""
    from mipssim.pointing import plan_photometry
    from mipssim.scene import make_scene
    cfg = load_config(band=160, n_dce=6, seed=8, n_sources=0, bright_source_jy=1.0,
                      include_background=False, blob_peak_mjysr=0.0)
    wcs = plan_photometry(cfg)[0].wcs
    images = {leak: make_scene(dataclasses.replace(cfg, include_leak=leak),
                               np.random.default_rng(1)).render(wcs, (3, 20)) for leak in (True, False)}
    assert images[False].max() > 0
    np.testing.assert_allclose(images[True] - images[False], leak_factor(3000.0) * images[False],
                               rtol=1e-9, atol=1e-12)
    with h5py.File(hot160[True] / "truth.h5") as t:
        src = t["sources"][()][-1]
    assert src["leak_jy_160"] == pytest.approx(src["flux_jy_160"] * leak_factor(3000.0))


def test_reprocess_flags_pixels_near_hot_sources_only(hot160, tmp_path):
    with h5py.File(hot160[True] / "truth.h5") as t:
        src = t["sources"][()][-1]
    f14 = src["flux_jy_160"] * 2.0e3                          # a hot source: bright in the near IR
    cat = Table({"ra": [src["ra"], src["ra"] + 0.05], "dec": [src["dec"], src["dec"]],
                 "flux_nir_jy": [f14, 1e-9]})
    path = tmp_path / "hot.ecsv"
    cat.write(path)
    assert main(["reprocess", str(hot160[True]), "--leak-catalog", str(path)]) == 0
    masks = [fits.getdata(p) for p in sorted((hot160[True] / "bcd").glob("*_bmask.fits"))]
    flagged = np.array([(m & BMASK["LEAK"]).any() for m in masks])
    assert flagged.any() and 0 < (np.array([(m & BMASK["LEAK"]) != 0 for m in masks]).mean()) < 0.5


def test_a_bad_leak_catalogue_is_one_line(tmp_path):
    path = tmp_path / "bad.ecsv"
    Table({"ra": [1.0], "dec": [2.0]}).write(path)
    with pytest.raises(InputError, match="bad.ecsv: leak catalogue lacks column"):
        read_leak_catalog(path)
