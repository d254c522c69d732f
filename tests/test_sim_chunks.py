"""The simulator in chunks of DCEs (issue 13, item 2): the same files for any worker count and chunk size.

Every raw file is compared byte for byte, and truth.h5 by its contents: every group's and dataset's
attributes (values, dtypes and shapes) and every dataset's dtype, shape and bytes, by object name
(an HDF5 file's bytes could depend on the order objects were written in, which is not what is
being tested).  With one worker the chunks run in order, each from the full simulation's state at
the end of the one before; with several, each starts from the state-only pass's snapshot
(mipssim/carry.py), so equal files show that the pass reproduces the carried state exactly.  The
cases are small scan maps (tests/test_scan_pipeline.py's 70 um map; 24 um and 160 um maps as in
tests/test_sim_bitwise.py) and photometry AORs, with the carried states made to matter: anneals
inside the AOR, the transient response switched on, a bright source leaving 24 um latents.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import mipssim.observe as observe
from calibration.instrument import band_spec
from mips.cli import main
from mipssim.carry import PrfReach, _distance_to_array, si_latent_dces
from mipssim.config import load_config
from mipssim.ge_ga import draw_hits
from mipssim.observe import simulate
from mipssim.psf import PSF_TEMPERATURES_K, load_prf
from mipssim.scan import plan_scan
from mipssim.writers import TruthWriter

# anneal every 20 min, the last one 100 s before the AOR starts: an anneal inside every Ge AOR below
STATE = {"anneal_interval_s": 1200.0, "t_since_anneal_s": 1100.0}
CASES = {
    "scan70": dict(band=70, seed=503, mode="scan", scan_legs=2, scan_leg_arcmin=5.0, n_sources=40,
                   include_transient=True, resp_step_rate_per_hr=20.0, **STATE),
    "scan24": dict(band=24, seed=23, mode="scan", scan_legs=2, scan_leg_arcmin=2.0,
                   scan_overscan_arcmin=8.0, bright_source_jy=120.0),
    "scan160": dict(band=160, seed=22, mode="scan", scan_legs=3, scan_leg_arcmin=12.0,
                    scan_overscan_arcmin=0.0, scan_rate="fast", **STATE),
    "phot70": dict(band=70, seed=11, n_dce=30, **STATE),
    "phot24": dict(band=24, seed=13, n_dce=14, bright_source_jy=120.0, engineering_ramps=True),
}
# (workers, DCEs per chunk) against one worker with all DCEs in one chunk: workers 1, 2 and 4 and
# two chunk sizes for the scan maps
RUNS = {"scan70": [(1, 7), (2, 7), (2, 32), (4, 32)],
        "scan24": [(1, 4), (2, 4), (2, 9), (4, 9)],
        "scan160": [(2, 5), (4, 11)],
        "phot70": [(2, 4), (4, 13)],
        "phot24": [(2, 3), (4, 5)]}


def _contents(path: Path) -> dict:
    """Every object's attributes and every dataset's dtype, shape and bytes, by name."""
    def attrs(obj):
        return {k: (np.asarray(v).dtype.str, np.shape(v), np.asarray(v).tobytes())
                for k, v in obj.attrs.items()}
    out = {}
    with h5py.File(path) as f:
        out["/"] = (attrs(f), None)

        def visit(name, obj):
            data = ((obj.dtype.str, obj.shape, obj[()].tobytes()) if isinstance(obj, h5py.Dataset)
                    else None)
            out[name] = (attrs(obj), data)
        f.visititems(visit)
    return out


def _files(obs: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted((obs / "raw").iterdir())}


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Each case simulated with one worker, all its DCEs in one chunk."""
    root = tmp_path_factory.mktemp("chunks")
    out = {}
    for case, kw in CASES.items():
        cfg = load_config(**kw)
        simulate(cfg, root / case, chunk_dces=10_000)
        out[case] = (cfg, root / case)
    return out


@pytest.mark.parametrize("case, workers, chunk", [(c, w, k) for c in CASES for w, k in RUNS[c]])
def test_files_do_not_depend_on_workers_or_chunks(references, tmp_path, case, workers, chunk):
    cfg, ref = references[case]
    simulate(cfg, tmp_path / "obs", workers=workers, chunk_dces=chunk)
    files, expected = _files(tmp_path / "obs"), _files(ref)
    assert len(files) > chunk and list(files) == list(expected)      # several chunks
    for name in files:
        assert files[name] == expected[name], name
    assert _contents(tmp_path / "obs" / "truth.h5") == _contents(ref / "truth.h5")
    assert sorted(p.name for p in (tmp_path / "obs").iterdir()) == ["raw", "truth.h5"]  # parts gone


def test_the_carried_states_matter_in_these_cases(references):
    """Otherwise the comparisons above would not test the state-only pass."""
    cfg, ref = references["scan70"]
    with h5py.File(ref / "truth.h5") as t:
        assert len(t["anneals"]) >= 1 and len(t["responsivity_steps"]) >= 1
    for case in ("scan24", "phot24"):
        with h5py.File(references[case][1] / "truth.h5") as t:
            groups = list(t["dce"].values())
            assert sum(g["latent_dn_s"][()].max() > 0 for g in groups) >= 2, case
            assert any("dark_latent_frac" in g for g in groups), case


@pytest.mark.parametrize("case", ["scan70", "scan24"])
def test_state_pass_reproduces_the_full_simulation_at_every_dce(tmp_path, case):
    """The state-only pass's state before each DCE equals the full simulation's, bit for bit."""
    cfg = load_config(**CASES[case])
    plans = plan_scan(cfg)
    aor = observe._make_aor(cfg, plans)
    passed = observe._start_states(aor, plans, [(i, i + 1) for i in range(len(plans))])
    carry = aor.initial_carry()
    raw = tmp_path / "raw"
    raw.mkdir()
    truth = TruthWriter(tmp_path / "t.h5")
    mjds, dates = observe._dates(cfg, plans)
    for i, plan in enumerate(plans):
        _assert_same_state(aor.working_state(passed[i]), carry, case)
        aor.simulate_dce(plan, aor.factors[i], carry, raw, truth, mjds[i], dates[i])
    truth.close()


def _assert_same_state(a, b, case):
    if case.endswith("24"):
        assert a.prev_mid_s == b.prev_mid_s
        for name in ("short", "dark", "long"):
            assert getattr(a.latents, name).tobytes() == getattr(b.latents, name).tobytes()
    else:
        assert (a.prev_start_s, a.prev_end_s) == (b.prev_start_s, b.prev_end_s)
        assert a.cr.excess.tobytes() == b.cr.excess.tobytes()
        assert (a.transient is None) == (b.transient is None)
        if a.transient is not None and a.transient.log_adapt is not None:
            assert a.transient.log_adapt.tobytes() == b.transient.log_adapt.tobytes()
            assert a.transient.log_hook.tobytes() == b.transient.log_hook.tobytes()


def test_latent_bound_is_an_upper_bound_and_selective():
    """The DCEs the state-only pass skips have every pixel's photocurrent at or below every latent
    threshold (the pass renders only the others), and it does skip some (a 20' leg; on this field
    half the DCEs have a source above the 3000 DN/s threshold of the short-lived latent)."""
    cfg = load_config(**{**CASES["scan24"], "scan_overscan_arcmin": 18.0})
    plans = plan_scan(cfg)
    aor = observe._make_aor(cfg, plans)
    render = si_latent_dces(aor, plans)
    threshold = min(cfg.latent_threshold_dn_s, cfg.dark_latent_threshold_dn_s,
                    cfg.long_latent_threshold_dn_s)
    peaks = np.array([aor.signal(plan)[2].max() for plan in plans])
    assert np.all(peaks[~render] <= threshold)
    assert np.any(peaks > threshold)                  # the bright source does leave latents
    assert 0 < render.sum() < len(plans)


def test_source_distances_of_the_latent_bound_follow_the_wcs_within_its_margin():
    """The bound places sources by the gnomonic projection without SIP and allows 1 pixel for it:
    within 30 pixels of the array the distance is within 0.5 pixel of the full WCS's."""
    cfg = load_config(band=24, mode="scan", scan_legs=4, n_sources=60)
    plans = plan_scan(cfg)[::7]
    prep = observe._make_aor(cfg, plans).scene._prepared()
    approx = _distance_to_array(plans, prep.ra, prep.dec, (128, 128))
    near = 0
    for plan, d in zip(plans, approx):
        xs, ys = plan.wcs.all_world2pix(prep.ra, prep.dec, 0)
        exact = np.hypot(np.maximum(np.maximum(-xs, xs - 127), 0), np.maximum(np.maximum(-ys, ys - 127), 0))
        close = exact < 30
        near += close.sum()
        assert np.all(np.abs(d[close] - exact[close]) < 0.5)
    assert near > 100


@pytest.mark.parametrize("band", [24, 70, 160])
def test_prf_reach_bounds_the_prf(band):
    """At 40000 random offsets within 20 pixels, and at the largest value within 10 % of it."""
    spec = band_spec(band)
    rng = np.random.default_rng(band)
    for t in PSF_TEMPERATURES_K[:: 5 if band == 24 else 2]:
        prf = load_prf(band, t, spec.pixel_arcsec)
        reach = PrfReach.of(prf)
        dy, dx = rng.uniform(-20, 20, (2, 40000))
        assert np.all(prf(dy, dx) <= reach.bound(np.hypot(dy, dx)))
        off = np.linspace(-0.6, 0.6, 121)
        peak = prf(*np.meshgrid(off, off, indexing="ij")).max()
        assert peak <= reach.bound(0.0) < 1.15 * peak, (t, peak, reach.bound(0.0))


def test_sparse_hits_are_a_poisson_process_per_cell():
    """Counts over 2000 DCEs of 4 x 3 x 5 cells at 0.05 per cell: mean and variance of the total
    (Poisson: equal), none in a skipped read, each cell equally likely, sorted (read, y, x)."""
    rng = np.random.default_rng(5)
    shape, mean = (4, 3, 5), 0.05
    skip = np.array([True, False, False, False])
    totals, cells = [], np.zeros(shape)
    for _ in range(2000):
        read, y, x = draw_hits(rng, mean, shape, skip)
        assert not np.any(skip[read])
        key = (read * 3 + y) * 5 + x
        assert np.all(np.diff(key) >= 0)
        totals.append(len(read))
        np.add.at(cells, (read, y, x), 1)
    lam = mean * 45
    n = len(totals)
    assert np.mean(totals) == pytest.approx(lam, abs=4 * np.sqrt(lam / n))
    assert np.var(totals) == pytest.approx(lam, abs=4 * lam * np.sqrt(2 / n) + 4 * np.sqrt(lam / n))
    per_cell = cells[1:].ravel()
    expect = mean * n
    assert np.all(np.abs(per_cell - expect) < 5 * np.sqrt(expect))


def test_bad_worker_and_chunk_counts_are_refused(tmp_path, capsys):
    assert main(["simulate", "--n-dce", "3", "--out", str(tmp_path / "a"), "--workers", "0"]) == 2
    assert "workers must be a whole number >= 1" in capsys.readouterr().err
    assert main(["simulate", "--n-dce", "3", "--out", str(tmp_path / "b"), "--chunk-dces", "-2"]) == 2
    assert "chunk_dces must be" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)           # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
from mips.cli import main
sys.exit(main(["simulate", "--band", "160", "--n-dce", "240", "--out", sys.argv[1], *sys.argv[2:]]))
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_truth_file_too_large_for_the_disk_is_one_line_not_a_crash(tmp_path, workers):
    """160 um raw files are small (9 kB), the truth (~1.5 kB a DCE) outgrows the 100 kB limit: the
    HDF5 library writes through mipssim.writers._Sink, which never fails under it."""
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-c", LIMITED, str(tmp_path / "obs"), "--workers", workers,
                          "--chunk-dces", "120"], env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith(("INFO", "WARNING"))]
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-2000:]
    assert str(tmp_path / "obs") in lines[0] and os.strerror(errno.EFBIG).lower() in lines[0].lower()
    assert not (tmp_path / "obs").exists()


def test_a_dask_distributed_client_gives_the_same_files(references, tmp_path):
    """Chunks run on a local dask.distributed cluster (threads of this process) instead."""
    distributed = pytest.importorskip("distributed")
    cfg, ref = references["phot70"]
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=":0") as client:
        simulate(cfg, tmp_path / "obs", chunk_dces=4, client=client)
    assert _files(tmp_path / "obs") == _files(ref)
    assert _contents(tmp_path / "obs" / "truth.h5") == _contents(ref / "truth.h5")
