"""The pipelines stream DCEs in batches (issue 16, item 3): the products do not depend on the batch size,
the DCEs' arrays go through the spill file unchanged, and what is kept of a DCE is a small summary.

Peak memory itself is measured in ``benchmarks/memory_scaling.py`` (no timed or memory tests here).
"""
import os
import shutil

import numpy as np
import pytest

import reprocess.ge_pipeline as gp
from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.io import (InputError, raw_files, read_all, read_raw_dce, read_raw_si,
                          reread)
from reprocess.pipeline import reprocess
from reprocess.spill import Spill, SpilledMaps
from reprocess.stim import same_sky


def _products(folder):
    return {p.name: p.read_bytes() for p in sorted((folder / "bcd").iterdir())}


def _reprocess_with_batch(raw_from, dst, batch, monkeypatch):
    shutil.copytree(raw_from / "raw", dst / "raw")
    with monkeypatch.context() as m:
        m.setattr(gp, "_BATCH", batch)
        reprocess(dst)
    return _products(dst)


@pytest.fixture(scope="module")
def scan70(tmp_path_factory):
    """A small 70 um scan map: every flash measured against the sky its pixels saw in the DCEs
    around it (the moving-sky background, whose coordinates go through the spill)."""
    d = tmp_path_factory.mktemp("scan70")
    simulate(load_config(band=70, seed=503, mode="scan", scan_legs=2, scan_leg_arcmin=5.0, n_sources=40), d)
    return d


@pytest.fixture(scope="module")
def phot160(tmp_path_factory):
    """A 12-DCE 160 um photometry AOR: two ramps per DCE, flashes with sky DCEs at their pointing."""
    d = tmp_path_factory.mktemp("phot160")
    simulate(load_config(band=160, seed=7, n_dce=12), d)
    return d


@pytest.mark.parametrize("which", ["obs70", "scan70", "phot160"])
def test_ge_products_byte_identical_for_any_batch_size(which, request, tmp_path, monkeypatch):
    obs = request.getfixturevalue(which)
    ref = _reprocess_with_batch(obs, tmp_path / "default", gp._BATCH, monkeypatch)
    one = _reprocess_with_batch(obs, tmp_path / "one", 1, monkeypatch)
    five = _reprocess_with_batch(obs, tmp_path / "five", 5, monkeypatch)
    assert "ramps.h5" in ref and sum(n.endswith("_bcd.fits") for n in ref) >= 9
    for name, data in ref.items():
        assert one[name] == data, name             # manifest.json included: same products, same sha256
        assert five[name] == data, name
    assert one.keys() == ref.keys() == five.keys()


def test_24um_products_do_not_depend_on_the_second_reading(obs24, tmp_path):
    """The 24 um pipeline reads each DCE again after the folder checks: same products as before the
    change is checked by the end-to-end tests; here, a DCE that changed in between is refused."""
    shutil.copytree(obs24 / "raw", tmp_path / "raw")
    index = read_all(raw_files(tmp_path), read_raw_si, keep_going=False, failures=[], band=24,
                     keep_data=False)
    assert all(d.reads is None and d.data_shape == (2, 128, 128) for d in index)
    again = reread(index[1])
    full = read_raw_si(index[1].path)
    np.testing.assert_array_equal(again.reads, full.reads)
    assert again.card_images == full.card_images and again.nreads == full.nreads
    raw = bytearray(index[1].path.read_bytes())
    raw[-1] ^= 1                                   # one bit of the data
    index[1].path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="changed while being reprocessed"):
        reread(index[1])


def test_summary_keeps_what_the_checks_and_side_tables_need(obs70):
    full = read_all(raw_files(obs70), read_raw_dce, keep_going=False, failures=[])
    light = read_all(raw_files(obs70), read_raw_dce, keep_going=False, failures=[], keep_data=False)
    assert [d.path for d in light] == [d.path for d in full]          # same checks, same order
    for a, b in zip(full, light):
        assert b.reads is None and not b.card_images and b.data_shape == a.reads.shape
        assert (b.band, b.stim, b.samptime, b.nreads, b.nramps, b.identity, b.mjd_mid, b.sha1) == \
            (a.band, a.stim, a.samptime, a.nreads, a.nramps, a.identity, a.mjd_mid, a.sha1)


def test_spill_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    arrays = {("slope", 0): rng.normal(size=(32, 32)), ("jumps", 0): rng.random((7, 5, 3)) < 0.3,
              ("flags", 1): rng.integers(0, 2 ** 30, (4, 4), dtype=np.int32),
              ("empty", 2): np.zeros((0, 3)), ("cards", 3): np.frombuffer(b"SIMPLE  =  T" * 9, np.uint8),
              ("noncontig", 4): rng.normal(size=(6, 8))[:, ::2]}
    with Spill(tmp_path) as spill:
        for key, a in arrays.items():
            spill.put(key, a)
        assert os.listdir(tmp_path) == []                      # unlinked: never seen in the folder
        for key, a in arrays.items():
            b = spill.get(key)
            assert b.dtype == a.dtype and b.shape == a.shape and b.tobytes() == a.tobytes(), key
        maps = SpilledMaps(spill, "slope", 1, (32, 32), nan_where=np.eye(32, dtype=bool), cache=1)
        assert maps.shape == (1, 32, 32) and np.isnan(np.diag(maps[0])).all()
        np.testing.assert_array_equal(maps[0][~np.eye(32, dtype=bool)],
                                      arrays[("slope", 0)][~np.eye(32, dtype=bool)])
        with pytest.raises(ValueError):
            maps[0][0, 1] = 1.0                                # read-only: callers cannot alter it
        with pytest.raises(IndexError):
            maps[1]


def test_stim_rows_of_the_sky_match_are_those_of_same_sky():
    rng = np.random.default_rng(5)
    n = 300
    centre = rng.normal(size=(n, 3)) * 1e-4 + np.array([1.0, 0.0, 0.0])
    positions = np.stack([centre, centre + 1e-3], axis=1)
    positions[50:] = positions[rng.integers(0, 50, n - 50)] + rng.normal(0, 1e-7, (n - 50, 2, 3))
    positions /= np.linalg.norm(positions, axis=-1, keepdims=True)
    rows = np.sort(rng.choice(n, 70, replace=False))
    full = same_sky(positions, 2e-6)
    ours = gp._SkyMatch(positions, rows, 2e-6, block=16)
    cols = np.arange(n)
    assert full[rows].any(axis=1).sum() > 10                  # the test sees matches
    for i in rows:
        np.testing.assert_array_equal(ours[i, cols], full[i])
