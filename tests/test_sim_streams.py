"""One random stream per (effect, DCE): an effect's change in one DCE never moves the noise of another."""
import h5py
import numpy as np
import pytest
from astropy.io import fits

from mipssim.config import load_config
from mipssim.observe import simulate
from mipssim.si_as import default_si_detector
from mipssim.streams import EFFECTS, PER_DCE_EFFECTS, dce_streams, effect_rng


def _cubes(obs):
    return {p.name: fits.getdata(p) for p in sorted((obs / "raw").glob("*_raw.fits"))}


def test_stim_off_leaves_the_noise_of_later_sky_dces_unchanged(tmp_path):
    """DCE 5 is the flash; DCEs 6, 7 see the same sky with identical Poisson, read and reset noise.

    With one stream per effect for the whole AOR, the flash's larger Poisson draw
    consumed a different number of variates and every later DCE changed (36 DN RMS).
    """
    base = dict(band=70, n_dce=8, seed=21)
    simulate(load_config(**base), tmp_path / "on")
    simulate(load_config(**base, include_stim=False), tmp_path / "off")
    on, off = _cubes(tmp_path / "on"), _cubes(tmp_path / "off")
    names = sorted(on)
    assert len(names) == 8 and fits.getheader(tmp_path / "on" / "raw" / names[5])["STIMFLSH"]
    for i, name in enumerate(names):
        if i == 5:
            assert np.mean(on[name].astype(float) - off[name]) > 1000    # the flash itself
        else:
            np.testing.assert_array_equal(on[name], off[name], err_msg=name)


def test_24um_later_dces_do_not_depend_on_earlier_signal(tmp_path):
    """The first-frame deficit changes the signal (hence Poisson draws) of DCEs 0-2 only."""
    base = dict(band=24, n_dce=5, seed=8, include_latents=False, engineering_ramps=True)
    simulate(load_config(**base), tmp_path / "a")
    simulate(load_config(**base, include_first_frame=False), tmp_path / "b")
    a, b = _cubes(tmp_path / "a"), _cubes(tmp_path / "b")
    names = sorted(a)
    assert not np.array_equal(a[names[0]], b[names[0]])
    for name in names[3:]:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_streams_have_distinct_keys_and_scene_drift_keep_their_realisation():
    firsts = {}
    for e in PER_DCE_EFFECTS:
        for d in range(4):
            firsts[(e, d)] = effect_rng(5, e, d).integers(0, 2 ** 63)
    for e in set(EFFECTS) - set(PER_DCE_EFFECTS):
        firsts[(e,)] = effect_rng(5, e).integers(0, 2 ** 63)
    assert len(set(firsts.values())) == len(firsts)
    old = np.random.SeedSequence(5).spawn(2)          # how the scene and drift were seeded before
    for child, name in zip(old, ("scene", "drift")):
        assert np.random.default_rng(child).random() == effect_rng(5, name).random()
    again = dce_streams(5, 3)
    assert again["poisson"].integers(0, 2 ** 63) == firsts[("poisson", 3)]
    with pytest.raises(ValueError, match="per-DCE"):
        effect_rng(5, "poisson")
    with pytest.raises(ValueError, match="unknown"):
        effect_rng(5, "weather", 1)


def test_24um_true_detector_does_not_depend_on_n_spots(tmp_path):
    dets = {k: default_si_detector(load_config(band=24, n_spots=k)) for k in (0, 4, 10, 25)}
    ref = dets[10]
    for k, det in dets.items():
        for attr in ("gainflat", "read_noise", "dark_base", "pmask"):
            np.testing.assert_array_equal(getattr(det, attr), getattr(ref, attr), err_msg=f"{attr} {k}")
        assert len(det.spots) == k
        n = min(k, 10)
        np.testing.assert_array_equal(det.spots[:n], ref.spots[:n])   # fewer spots: a subset of more
    assert not np.allclose(dets[25].spot_map(0.0), ref.spot_map(0.0))
    # the simulated truth records the same detector whatever n_spots
    simulate(load_config(band=24, n_dce=1, n_spots=3), tmp_path / "a")
    simulate(load_config(band=24, n_dce=1, n_spots=30), tmp_path / "b")
    with h5py.File(tmp_path / "a" / "truth.h5") as ta, h5py.File(tmp_path / "b" / "truth.h5") as tb:
        for key in ("detector/read_noise_dn", "detector/pmask", "detector/gainflat"):
            np.testing.assert_array_equal(ta[key][()], tb[key][()])
