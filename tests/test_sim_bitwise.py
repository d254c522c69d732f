"""The simulator's fast raw-file path writes what astropy would write, and re-pointed WCSs transform
exactly as freshly parsed ones.

The raw FITS files are serialised by ``mipssim.writers`` (card images, blocks) instead of
``astropy.io.fits``, and each DCE's WCS is a re-pointed copy of one parse per AOR
(``mipssim.pointing.pointed_wcs``).  No old outputs are stored (they would pin package versions):
instead every raw file of small photometry and scan observations of all three bands is compared
byte for byte with the slow reference path the simulator used before -- an astropy ``Header``
built card by card from the same cards, the same data, ``HDUList.writeto`` -- card formatting
with ``astropy.io.fits.Card`` over generated values, the header's pointing and dates and the
truth sky with a render through the WCS parsed from the raw header, and two runs' raw and truth
files with each other.
"""
from __future__ import annotations

import io
import warnings

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from hypothesis import given, settings, strategies as st

import mipssim.observe as observe
from mipssim.config import load_config
from mipssim.ge_ga import STREAMS
from mipssim.observe import simulate
from mipssim.pointing import plan_photometry
from mipssim.scan import plan_scan
from mipssim.scene import make_scene
from mipssim.writers import card

# small observations: photometry and scan maps of every band, 24 um with its RAMP extension,
# 70 um without saturation (int32 cube) and a slow scan at another roll and declination
CASES = {
    "phot70": dict(band=70, seed=11, n_dce=8),
    "phot160": dict(band=160, seed=12, n_dce=5),
    "phot24": dict(band=24, seed=13, n_dce=3, engineering_ramps=True),
    "phot70_int32": dict(band=70, seed=15, n_dce=3, include_saturation=False),
    "scan70": dict(band=70, seed=21, mode="scan", scan_legs=2, scan_leg_arcmin=2.0,
                   scan_overscan_arcmin=0.0),
    "scan160": dict(band=160, seed=22, mode="scan", scan_legs=2, scan_leg_arcmin=2.0,
                    scan_overscan_arcmin=0.0, scan_rate="fast"),
    "scan24": dict(band=24, seed=23, mode="scan", scan_legs=2, scan_leg_arcmin=1.0,
                   scan_overscan_arcmin=0.0),
    "scan70_slow": dict(band=70, seed=24, mode="scan", scan_legs=3, scan_leg_arcmin=0.5,
                        scan_overscan_arcmin=0.0, scan_rate="slow", pa_deg=37.0, dec_deg=-62.5),
}


@pytest.fixture(scope="module")
def observations(tmp_path_factory):
    """Each case simulated once, recording what each raw file was written from: the header's
    cards as :meth:`RawHeaders.cards` lists them (keyword, value, comment) and the HDUs' data."""
    root = tmp_path_factory.mktemp("bitwise")
    written = {}          # (case, file name) -> (cards, [(data, extname), ...])
    case = None
    cards_of = observe.RawHeaders.cards
    write = observe.write_hdus
    last = []

    def recording_cards(self, *args, **kwargs):
        last[:] = [cards_of(self, *args, **kwargs)]
        return last[0]

    def recording_write(path, images):
        written[case, path.name] = (last[0], [(im.data.copy(), im.extname) for im in images])
        return write(path, images)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(observe.RawHeaders, "cards", recording_cards)
        mp.setattr(observe, "write_hdus", recording_write)
        for case, kw in CASES.items():
            simulate(load_config(**kw), root / case)
    return root, written


def _astropy_bytes(cards, hdus, provenance: str) -> bytes:
    """The reference: the header built card by card as an astropy Header (as the simulator did
    before it rendered cards itself), the provenance HISTORY, and astropy's ``writeto``."""
    header = fits.Header()
    for keyword, value, comment in cards:
        header[keyword] = (value, comment)
    header.add_history(provenance)
    out = [fits.PrimaryHDU(hdus[0][0], header=header)]
    out += [fits.ImageHDU(data, name=extname) for data, extname in hdus[1:]]
    buf = io.BytesIO()
    fits.HDUList(out).writeto(buf)
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(CASES))
def test_raw_files_are_what_astropy_writes(observations, case):
    root, written = observations
    provenance = observe._provenance(load_config(**CASES[case]))
    files = sorted((root / case / "raw").glob("*_raw.fits"))
    assert files
    for f in files:
        cards, hdus = written[case, f.name]
        assert f.read_bytes() == _astropy_bytes(cards, hdus, provenance), f.name


@pytest.mark.parametrize("case", ["phot70", "scan70_slow", "scan24", "scan160"])
def test_header_pointing_and_dates_and_truth_sky_match_a_fresh_parse(observations, case):
    observations = observations[0]
    cfg = load_config(**CASES[case])
    plans = plan_scan(cfg) if cfg.mode == "scan" else plan_photometry(cfg)
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(STREAMS))
    scene = make_scene(cfg, np.random.default_rng(seeds[STREAMS.index("scene")]))
    files = sorted((observations / case / "raw").glob("*_raw.fits"),
                   key=lambda f: fits.getheader(f)["MJD_OBS"])
    assert len(files) == len(plans)
    with h5py.File(observations / case / "truth.h5") as truth:
        for plan, f in zip(plans, files):
            hdr = fits.getheader(f)
            assert (hdr["CRVAL1"], hdr["CRVAL2"]) == plan.crval
            mjd = cfg.mjd_start + plan.t_start_s / 86400.0
            assert hdr["MJD_OBS"] == mjd and hdr["DATE_OBS"] == Time(mjd, format="mjd").isot
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fresh = WCS(hdr, naxis=2)
            ny, nx = truth["dce"][f.name[:-len("_raw.fits")]]["sky_mjysr"].shape
            yy, xx = np.mgrid[0:ny, 0:nx]
            for a, b in zip(fresh.all_pix2world(xx, yy, 0), plan.wcs.all_pix2world(xx, yy, 0)):
                assert np.array_equal(a, b)
            sky = truth["dce"][f.name[:-len("_raw.fits")]]["sky_mjysr"][()]
            assert np.array_equal(sky, scene.render(fresh, (ny, nx)))


def _contents(path) -> dict:
    """Every dataset's bytes and every attribute of an HDF5 file, by object name."""
    out = {}
    with h5py.File(path) as f:
        def visit(name, obj):
            attrs = {k: np.asarray(v).tobytes() for k, v in obj.attrs.items()}
            data = obj[()].tobytes() if isinstance(obj, h5py.Dataset) else None
            out[name] = (attrs, data)
        f.visititems(visit)
        out["/"] = ({k: np.asarray(v).tobytes() for k, v in f.attrs.items()}, None)
    return out


def test_two_runs_give_identical_raw_files_and_truth(observations, tmp_path):
    observations = observations[0]
    for case in ("scan70", "phot24"):
        simulate(load_config(**CASES[case]), tmp_path / case)
        a = sorted((observations / case / "raw").iterdir())
        b = sorted((tmp_path / case / "raw").iterdir())
        assert [f.name for f in a] == [f.name for f in b]
        assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
        assert _contents(observations / case / "truth.h5") == _contents(tmp_path / case / "truth.h5")


_KEYS = st.sampled_from(["CRVAL1", "DATE_OBS", "SMEAR2", "A_2_0", "X"])
_COMMENTS = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=70)
_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.floats(min_value=-1e-3, max_value=1e-3),
    st.integers(min_value=-2 ** 62, max_value=2 ** 62), st.booleans(),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80))


@settings(max_examples=400, deadline=None)
@given(key=_KEYS, value=_VALUES, comment=_COMMENTS)
def test_card_images_are_astropys(key, value, comment):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # astropy warns when it truncates a long comment
        assert card(key, value, comment) == fits.Card(key, value, comment).image
