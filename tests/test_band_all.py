"""The three arrays of one AOR (``--band all``): one sky, own noise, one folder, one commit.

A small AOR (12 DCEs per array) is simulated once through the command line; the tests check
what the contract promises of it: every array's raw files of one AORKEY in ``raw/``, one truth
whose arrays share one source table and differ in their detector noise, a folder of several
arrays refused without ``--band`` (one line naming them), ``--band all`` reprocessing them into
one ``bcd/`` with one manifest (a rerun skips), ``--band B`` one array alone, and ``mips
validate`` scoring each array against its goals.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import tomllib
from astropy.coordinates import SkyCoord

from mips.cli import main
from mips.validate import _jsonable, validate
from mipssim.config import FOCAL_PLANE_OFFSETS_ARCSEC, aor_configs, load_config
from mipssim.observe import _aor_streams, simulate
from mipssim.scan import plan_scan
from mipssim.scene import _LAMBDA_UM, make_scene
from mipssim.streams import dce_streams, noise_seed
from reprocess.io import several_arrays
from reprocess.pipeline import reprocess

N_DCE = 12


@pytest.fixture(scope="module")
def aor(tmp_path_factory):
    """``mips simulate --band all --n-dce 12 --seed 4``: raw/ and truth.h5 (read-only)."""
    out = tmp_path_factory.mktemp("aor") / "aor"
    assert main(["simulate", "--band", "all", "--n-dce", str(N_DCE), "--seed", "4",
                 "--out", str(out)]) == 0
    return out


def _copy(obs: Path, to: Path) -> Path:
    """A fresh copy of an observation's inputs (raw/, truth.h5)."""
    to.mkdir()
    shutil.copytree(obs / "raw", to / "raw")
    shutil.copy(obs / "truth.h5", to / "truth.h5")
    return to


def test_one_folder_holds_the_three_arrays_of_one_aor(aor):
    names = sorted(p.name for p in (aor / "raw").iterdir())
    for ch in (1, 2, 3):
        assert sum(n.startswith(f"SPITZER_M{ch}_12345678_") for n in names) == N_DCE
    assert len(names) == 3 * N_DCE
    with h5py.File(aor / "truth.h5", "r") as truth:
        assert list(truth.attrs["bands"]) == [24, 70, 160]
        assert sorted(truth["dce"]) == [n[: -len("_raw.fits")] for n in names]
        for band in (24, 70, 160):       # each array's own detector, configuration and seeds
            cfg = tomllib.loads(truth[f"bands/{band}"].attrs["config"])
            assert cfg["band"] == band and cfg["seed"] == 4 and cfg["scene_band"] == 70
            assert f"bands/{band}/detector/pmask" in truth


def test_the_arrays_share_one_source_table(aor):
    """Every array's scene is the same table (what truth.h5 holds once), each source's brightest
    band carries the drawn flux, within the configured range."""
    cfgs = aor_configs(n_dce=N_DCE, seed=4)
    tables = [make_scene(c, _aor_streams(c)["scene"]).sources for c in cfgs]
    with h5py.File(aor / "truth.h5", "r") as truth:
        stored = truth["sources"][()]
    for table in tables:
        for col in table.colnames:
            assert np.array_equal(getattr(table[col], "value", table[col]), stored[col]), col
    peak = np.max([stored[f"flux_jy_{b}"] for b in _LAMBDA_UM], axis=0)
    assert np.all((peak >= cfgs[0].flux_min_jy * (1 - 1e-12)) & (peak <= cfgs[0].flux_max_jy * (1 + 1e-12)))
    # the band alone keeps drawing its fluxes at its own wavelength (single-band outputs unchanged)
    alone = load_config(band=160, n_dce=N_DCE, seed=4)
    single = make_scene(alone, _aor_streams(alone)["scene"]).sources
    assert single["flux_jy_160"].value[0] == alone.flux_max_jy


def test_each_array_has_its_own_noise_and_the_telescope_is_shared(aor):
    cfgs = aor_configs(n_dce=N_DCE, seed=4)
    seeds = [noise_seed(c) for c in cfgs]
    assert len(set(seeds)) == 3 and 4 not in seeds
    draws = [dce_streams(s, 0)["read_noise"].standard_normal(1000) for s in seeds]
    for a in range(3):
        for b in range(a + 1, 3):        # independent N(0,1): |r| < 5/sqrt(1000) by far
            assert abs(np.corrcoef(draws[a], draws[b])[0, 1]) < 5 / np.sqrt(1000)
    with h5py.File(aor / "truth.h5", "r") as truth:       # one telescope: one pointing jitter
        first = {ch: truth["dce"][f"SPITZER_M{ch}_12345678_0000_0000_0"].attrs["pointing_offset_arcsec"]
                 for ch in (2, 3)}
    assert np.array_equal(first[2], first[3]) and np.any(first[2] != 0)


def test_scan_map_arrays_sit_at_their_focal_plane_offsets():
    cfgs = aor_configs(mode="scan", seed=4, scan_legs=1, scan_leg_arcmin=1.0, scan_overscan_arcmin=0.0,
                       include_pointing_jitter=False)
    plans = {c.band: plan_scan(c) for c in cfgs}
    assert len({len(p) for p in plans.values()}) == 1               # one telescope path
    centre = {b: SkyCoord(*p[0].crval, unit="deg") for b, p in plans.items()}
    along = {b: FOCAL_PLANE_OFFSETS_ARCSEC[b][0] for b in plans}
    for b in (24, 160):
        sep = centre[b].separation(centre[70]).arcsec
        assert sep == pytest.approx(abs(along[b] - along[70]), rel=1e-3)


def test_several_arrays_means_more_than_one_file_of_two_bands():
    assert not several_arrays({70: [1] * 12, 24: [1]})               # a stray file: damage
    assert several_arrays({70: [1] * 12, 24: [1, 1]})
    assert several_arrays({24: [1] * 3, 70: [1] * 3, 160: [1] * 3})
    assert not several_arrays({70: [1] * 12})


def test_a_folder_of_several_arrays_is_refused_without_band(aor, tmp_path, capsys):
    obs = _copy(aor, tmp_path / "obs")
    assert main(["reprocess", str(obs)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mips reprocess")]
    assert err == [(f"mips reprocess: error: {obs / 'raw'}: raw files of 3 arrays (24 um: {N_DCE} DCEs, "
                    f"70 um: {N_DCE} DCEs, 160 um: {N_DCE} DCEs): reprocess them all with --band all, "
                    f"or one with --band 24|70|160")]
    assert not (obs / "bcd").exists()


def test_band_all_commits_every_array_once_and_a_rerun_skips(aor, tmp_path, capsys):
    obs = _copy(aor, tmp_path / "obs")
    assert main(["reprocess", str(obs), "--band", "all"]) == 0
    bcd = obs / "bcd"
    names = {p.name for p in bcd.iterdir()}
    assert {"ramps_M2.h5", "ramps_M3.h5", "manifest.json"} <= names and "ramps.h5" not in names
    for ch, n in ((1, N_DCE - 1), (2, N_DCE - 2), (3, N_DCE - 2)):   # 24: DCENUM 0; Ge: 2 flashes
        assert len([x for x in names if x.startswith(f"SPITZER_M{ch}_") and x.endswith("_bcd.fits")]) == n
    manifest = json.loads((bcd / "manifest.json").read_text())
    assert manifest["band"] == [24, 70, 160] and len(manifest["inputs"]) == 3 * N_DCE
    assert set(manifest["config"]) == {"24", "70", "160"}
    assert set(manifest["products"]) == names - {"manifest.json"}
    before = {p.name: p.read_bytes() for p in bcd.iterdir()}
    capsys.readouterr()
    assert main(["reprocess", str(obs), "--band", "all"]) == 0          # nothing changed: skipped
    assert "skipped" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in bcd.iterdir()} == before
    # each array's products are those of that array reprocessed alone (--band B)
    for band, ch in ((24, 1), (160, 3)):
        alone = _copy(aor, tmp_path / f"alone{band}")
        assert main(["reprocess", str(alone), "--band", str(band)]) == 0
        own = {p.name: p.read_bytes() for p in (alone / "bcd").iterdir() if p.name.endswith(".fits")}
        assert own and all(before[name] == data for name, data in own.items())
        assert all(n.startswith(f"SPITZER_M{ch}_") for n in own)
        if band == 160:
            assert (alone / "bcd" / "ramps.h5").read_bytes() == before["ramps_M3.h5"]
        manifest = json.loads((alone / "bcd" / "manifest.json").read_text())
        assert manifest["band"] == band and len(manifest["inputs"]) == N_DCE


def test_each_array_scores_as_if_simulated_and_reprocessed_alone(aor, tmp_path):
    """End to end: the AOR (simulate --band all, reprocess --band all, validate) scores each array
    exactly as that array's configuration simulated, reprocessed and validated alone: the raw
    files are the same bytes, and every figure is equal (so the merged truth, the shared bcd/ and
    the per-array ramp files change nothing).  ``validate`` exits 0 exactly when every array
    meets its goals (a 12-DCE AOR's Ge arrays do not: 2 flashes cannot tell the anomalous first
    flash from a responsivity change, at one band as at all)."""
    obs = _copy(aor, tmp_path / "obs")
    assert main(["reprocess", str(obs), "--band", "all"]) == 0
    status = main(["validate", str(obs)])
    res = json.loads((obs / "validation.json").read_text())
    assert set(res["channels"]) == {"24", "70", "160"}
    assert res["goals_met"] == all(one["goals_met"] for one in res["channels"].values())
    assert status == (0 if res["goals_met"] else 1)
    for cfg in aor_configs(n_dce=N_DCE, seed=4):
        alone = tmp_path / f"alone{cfg.band}"
        simulate(cfg, alone)
        ch = (24, 70, 160).index(cfg.band) + 1
        for path in (alone / "raw").iterdir():
            assert path.read_bytes() == (obs / "raw" / path.name).read_bytes()
        assert len(list((obs / "raw").glob(f"SPITZER_M{ch}_*"))) == N_DCE
        reprocess(alone)
        mine = validate(alone)
        theirs = res["channels"][str(cfg.band)]
        assert json.loads(json.dumps(_jsonable({k: v for k, v in mine.items() if k != "observation"}))) \
            == {k: v for k, v in theirs.items() if k != "observation"}
        assert (obs / f"validation_{cfg.band}um.png").is_file()
