"""24 um persistent latents (mipssim.si_latents): dark latents and long bright latents, flagged."""
import h5py
import numpy as np
import pytest
from astropy.io import fits

from calibration.bitmask import BBMSK
from mipssim.config import load_config
from mipssim.observe import simulate
from mipssim.si_latents import SiLatents
from reprocess.pipeline import reprocess


def test_latent_states_follow_their_laws():
    cfg = load_config(band=24)
    lat = SiLatents(cfg, (1, 3))
    photo = np.array([[1e3, 5e5, 2e6]])
    lat.update(photo)
    assert lat.dark.tolist() == [[0.0, cfg.dark_latent_depth, cfg.dark_latent_depth]]
    assert lat.long[0, 0] == lat.long[0, 1] == 0 and lat.long[0, 2] == pytest.approx(
        cfg.long_latent_fraction * (2e6 - cfg.long_latent_threshold_dn_s))
    lat.decay(cfg.dark_latent_tau_s)
    assert lat.dark[0, 1] == pytest.approx(cfg.dark_latent_depth / np.e)
    sig = lat.signal(np.full((1, 3), 100.0), np.zeros((1, 3)))
    assert sig[0, 1] == pytest.approx(100 * (1 - cfg.dark_latent_depth / np.e))   # a deficit
    assert sig[0, 2] > sig[0, 1]                                                 # plus the long one


@pytest.fixture(scope="module")
def bright24(tmp_path_factory):
    d = tmp_path_factory.mktemp("bright24")
    simulate(load_config(band=24, n_dce=8, seed=5, bright_source_jy=60.0), d)
    reprocess(d)
    return d


def test_a_60_jy_source_leaves_a_dark_latent_and_is_flagged(bright24):
    with h5py.File(bright24 / "truth.h5") as t:
        names = sorted(t["dce"], key=lambda n: t["dce"][n].attrs["t_start_s"])
        deficits = [t["dce"][n]["dark_latent_frac"][()] for n in names if "dark_latent_frac" in t["dce"][n]]
    assert deficits and max(d.max() for d in deficits) == pytest.approx(0.015, rel=0.01)
    masks = [fits.getdata(p) for p in sorted((bright24 / "bcd").glob("*_bbmsk.fits"))]
    flagged = [(m & BBMSK["PERSISTENT_LATENT"]) != 0 for m in masks]
    assert any(f.any() for f in flagged)
    assert max(f.mean() for f in flagged) < 0.2          # near the source's track, not everywhere
