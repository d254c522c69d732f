"""Unit tests of the raw-input validation layer (reprocess.rawcheck) and the folder reading of reprocess.io.

Small synthetic raw files (no simulation): each test names the failure class
of issue 10 it guards.  The damaged-folder corpus is ``tests/corpus.py``.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import pickle
import signal

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings, strategies as st

from calibration.geometry import array_wcs
from calibration.instrument import GE_READ_TIME_S
from calibration.si_as import sur_weight
from reprocess import io as rio
from reprocess.io import InputError, bcd_header, raw_files, read_all, read_raw_dce
from reprocess.pipeline import band_of
from reprocess.rawcheck import card_value, check_cards, si_slope_limit


def ge_header(*, nreads=8, expid=0, dcenum=0, mjd=54000.0, chnlnum=2) -> fits.Header:
    hdr = fits.Header()
    for key, value in (("TELESCOP", "Spitzer"), ("INSTRUME", "MIPS"), ("CHNLNUM", chnlnum),
                       ("AORKEY", 12345678), ("EXPID", expid), ("DCENUM", dcenum),
                       ("SAMPTIME", GE_READ_TIME_S), ("EXPTIME", nreads * GE_READ_TIME_S),
                       ("NRAMPS", 1), ("MJD_OBS", mjd), ("STIMFLSH", False)):
        hdr[key] = value
    hdr.update(array_wcs(70, (53.1, -27.8), 30.0))
    return hdr


def images(hdr: fits.Header) -> list[str]:
    """The 80-character card images of ``hdr``."""
    return [c.image for c in hdr.cards]


def ge_name(expid=0, dcenum=0, ch=2) -> str:
    return f"SPITZER_M{ch}_12345678_{expid:04d}_{dcenum:04d}_0_raw.fits"


def write_ge(folder, *, nreads=8, expid=0, dcenum=0, name=None, shape=(32, 32), **kw):
    """A valid raw 70 um DCE (a ramp of 50 DN per read); DCEs 20 s apart by DCENUM."""
    folder.mkdir(parents=True, exist_ok=True)
    hdr = ge_header(nreads=nreads, expid=expid, dcenum=dcenum,
                    mjd=54000.0 + (expid * 10 + dcenum) * 20.0 / 86400.0, **kw)
    data = (1000 + 50 * np.arange(nreads))[:, None, None] * np.ones(shape)
    path = folder / (name or ge_name(expid, dcenum))
    fits.writeto(path, data.astype(np.uint16), hdr)
    return path


# --- item 3: typed keywords -------------------------------------------------------------------
@pytest.mark.parametrize("key, value, problem", [
    ("STIMFLSH", "F", "is not a logical"), ("SAMPTIME", True, "is not a real number"),
    ("DCENUM", "3", "is not an integer"), ("DCENUM", 3.0, "is not an integer"),
    ("AORKEY", "1234abcd", "is not an integer or a string of digits"), ("EXPID", False, "is not an integer"),
    ("EXPTIME", "10.5", "is not a real number"), ("CRVAL1", 1 + 2j, "is not a real number"),
    ("CTYPE1", 5, "is not a string"), ("A_2_0", "x", "is not a real number"),
])
def test_a_wrong_type_is_refused_naming_file_and_keyword(key, value, problem):
    hdr = ge_header()
    hdr[key] = value
    with pytest.raises(InputError) as err:
        check_cards("some_raw.fits", images(hdr))
    assert str(err.value).startswith("some_raw.fits: ") and key in str(err.value)
    assert problem in str(err.value)


_values = st.one_of(st.booleans(), st.integers(-10 ** 15, 10 ** 15),
                    st.floats(allow_nan=False, allow_infinity=False, width=64),
                    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60))


@settings(max_examples=300, deadline=None)
@given(value=_values, comment=st.sampled_from(["", "a comment", "[s] x / y"]))
def test_card_value_reads_what_astropy_reads(value, comment):
    image = fits.Card("KEYWORD", value, comment).image
    expected = fits.Card.fromstring(image).value
    got = card_value(image)
    assert type(got) is type(expected) and got == expected, image


@pytest.mark.parametrize("image", ["SAMPTIME=            0.13x1072", "SAMPTIME=                  NAN",
                                   "ORIGIN  = 'mipssim", "DCENUM  =                   1x"])
def test_card_value_refuses_what_astropy_cannot_parse(image):
    with pytest.raises(ValueError):
        card_value(image.ljust(80))


def test_the_valid_header_passes_and_unwatched_keywords_may_be_anything():
    hdr = ge_header()
    hdr["OBJECT"] = 5
    hdr["FOO"] = "bar"
    check_cards("x", images(hdr))


def test_a_repeated_keyword_is_refused():
    hdr = ge_header()
    hdr.append(("STIMFLSH", True), useblanks=False, bottom=True)
    with pytest.raises(InputError, match="STIMFLSH appear more than once"):
        check_cards("x", images(hdr))


@pytest.mark.parametrize("edit, problem", [
    ({"DCENUM": -1}, "DCENUM=-1 is negative"),
    ({"SAMPTIME": 1.0}, "read every 0.131072 s"),
    ({"EXPTIME": 2.0}, "EXPTIME=2.0 s disagrees"),
    ({"MJD_OBS": 2454000.5}, "outside the Spitzer mission"),
    ({"CRVAL2": 100.0}, "is not a declination"),
    ({"CTYPE1": "FOO"}, "CTYPE1/2"),
    ({"CD1_1": 0.0, "CD1_2": 0.0}, "pixel scale"),
    ({"NREADS": 6}, "NREADS=6 but the cube has 8 reads"),
])
def test_out_of_range_values_are_refused(tmp_path, edit, problem):
    path = write_ge(tmp_path)
    with fits.open(path, mode="update") as h:
        for k, v in edit.items():
            h[0].header[k] = v
    with pytest.raises(InputError, match=problem.replace("(", r"\(").replace(".", r"\.")) as err:
        read_raw_dce(path)
    assert path.name in str(err.value)


def test_a_missing_cd_matrix_is_refused(tmp_path):
    path = write_ge(tmp_path)
    with fits.open(path, mode="update") as h:
        for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
            del h[0].header[k]
    with pytest.raises(InputError, match="no CD matrix"):
        read_raw_dce(path)


def test_cdelt_and_pc_are_a_valid_alternative_to_cd(tmp_path):
    path = write_ge(tmp_path)
    with fits.open(path, mode="update") as h:
        hdr = h[0].header
        for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
            del hdr[k]
        hdr["CDELT1"], hdr["CDELT2"] = -9.98 / 3600, 9.98 / 3600
    read_raw_dce(path)


# --- item 6: data type and range ---------------------------------------------------------------
@pytest.mark.parametrize("dtype, offset, problem", [
    (np.uint8, 0, "uint8"), (np.float32, 0.5, "fractional DN"), (np.int32, -2000, "below 0 DN"),
    (np.int32, 70000, "above the A/D full scale"),
])
def test_raw_data_must_be_integer_dn_within_the_adc_range(tmp_path, dtype, offset, problem):
    path = write_ge(tmp_path)
    hdr = fits.getheader(path)
    data = fits.getdata(path).astype(np.float64) + offset
    fits.writeto(path, data.astype(dtype), hdr, overwrite=True)
    with pytest.raises(InputError, match=problem):
        read_raw_dce(path)


def test_integer_dn_stored_as_floats_or_int32_read_the_same(tmp_path):
    a = read_raw_dce(write_ge(tmp_path / "a"))
    path = write_ge(tmp_path / "b")
    fits.writeto(path, fits.getdata(path).astype(np.float32), fits.getheader(path), overwrite=True)
    np.testing.assert_array_equal(read_raw_dce(path).reads, a.reads)


@pytest.mark.parametrize("nreads", [2, 3, 6, 16, 20, 60])
def test_si_slope_limit_is_the_largest_slope_the_adc_permits(nreads):
    adc = 65535.0
    w = sur_weight(nreads)
    extreme = np.where(w > 0, adc, 0.0)              # reads at the rails where the weights push up
    assert w @ extreme == pytest.approx(si_slope_limit(nreads, adc))
    reads = np.random.default_rng(nreads).uniform(0, adc, size=(10000, nreads))
    assert np.abs(reads @ w).max() <= si_slope_limit(nreads, adc)


# --- item 4 (reader part) and RAWSHA1 ----------------------------------------------------------
def test_per_dce_timing_is_kept_and_sha1_is_the_file_digest(tmp_path):
    p80 = write_ge(tmp_path, nreads=80, dcenum=0)
    p60 = write_ge(tmp_path, nreads=60, dcenum=1)
    dces = read_all([p80, p60], read_raw_dce, keep_going=False, failures=[])
    assert [d.nreads for d in dces] == [80, 60]
    assert [d.samptime for d in dces] == [GE_READ_TIME_S] * 2
    assert [d.nramps for d in dces] == [1, 1]
    assert dces[0].sha1 == hashlib.sha1(p80.read_bytes()).hexdigest()
    cards = bcd_header(dces[1], {})
    assert ("RAWSHA1", dces[1].sha1, "SHA-1 of the raw file's bytes") in cards


def test_bcd_header_copies_a_long_string_with_its_continue_cards(tmp_path):
    path = write_ge(tmp_path)
    with fits.open(path, mode="update") as h:
        h[0].header["FOVNAME"] = "MIPS_70um_" + "x" * 100
    cards = [c for c in bcd_header(read_raw_dce(path), {}) if isinstance(c, str)]
    text = "".join(cards)
    assert text.count("CONTINUE") >= 1
    hdr = fits.Header.fromstring(text + "END".ljust(80))
    assert hdr["FOVNAME"] == "MIPS_70um_" + "x" * 100


# --- item 5: the majority decides band and shape; the odd file is blamed -----------------------
def _folder(tmp_path, n=5):
    raw = tmp_path / "obs" / "raw"
    return raw, [write_ge(raw, dcenum=k) for k in range(n)]


def test_a_bad_first_file_is_blamed_and_keep_going_keeps_the_rest(tmp_path):
    raw, paths = _folder(tmp_path)
    paths[0].write_bytes(b"garbage" * 100)
    assert band_of(raw.parent) == 70
    with pytest.raises(InputError) as err:
        read_all(paths, read_raw_dce, keep_going=False, failures=[])
    assert paths[0].name in str(err.value)
    failures = []
    dces = read_all(paths, read_raw_dce, keep_going=True, failures=failures)
    assert len(dces) == 4 and [f[0] for f in failures] == [str(paths[0])]


def test_a_wrong_shape_or_band_in_the_first_file_blames_that_file(tmp_path):
    raw, paths = _folder(tmp_path)
    paths[0].unlink()
    odd = write_ge(raw, dcenum=0, shape=(16, 16))
    with pytest.raises(InputError, match="frame shape") as err:
        read_all(sorted(raw.iterdir()), read_raw_dce, keep_going=False, failures=[])
    assert str(err.value).startswith(str(odd))
    odd.unlink()
    odd = write_ge(raw, dcenum=0, chnlnum=3, name=ge_name(0, 0, ch=3))   # a 160 um header
    failures = []
    read_all(sorted(raw.iterdir()), read_raw_dce, keep_going=True, failures=failures)
    assert failures == [(str(odd), "CHNLNUM=3 (160 um) in a folder of 4 70 um DCEs")]


def test_no_majority_band_is_refused_naming_the_folder(tmp_path):
    raw, paths = _folder(tmp_path, n=2)
    with fits.open(paths[1], mode="update") as h:
        h[0].header["CHNLNUM"] = 3
    with pytest.raises(InputError, match="no majority band") as err:
        band_of(raw.parent)
    assert str(err.value).startswith(str(raw))


def test_duplicate_dces_are_refused(tmp_path):
    raw, paths = _folder(tmp_path, n=3)
    copy = raw / "zz_copy_raw.fits"
    copy.write_bytes(paths[1].read_bytes())
    with pytest.raises(InputError, match="same bytes as") as err:
        read_all(sorted(raw.iterdir()), read_raw_dce, keep_going=False, failures=[])
    assert str(err.value).startswith(str(copy))
    failures = []
    dces = read_all(sorted(raw.iterdir()), read_raw_dce, keep_going=True, failures=failures)
    assert len(dces) == 3 and [f[0] for f in failures] == [str(copy)]


def test_a_file_name_contradicting_the_header_is_refused(tmp_path):
    raw, paths = _folder(tmp_path, n=1)
    renamed = raw / ge_name(0, 0, ch=3)
    os.replace(paths[0], renamed)
    with pytest.raises(InputError, match="file name says channel M3 but CHNLNUM=2"):
        read_raw_dce(renamed)


def test_times_out_of_dcenum_order_blame_the_odd_dce(tmp_path):
    raw, paths = _folder(tmp_path)
    with fits.open(paths[2], mode="update") as h:
        h[0].header["MJD_OBS"] += 0.5
    with pytest.raises(InputError, match="out of the EXPID/DCENUM time order") as err:
        read_all(paths, read_raw_dce, keep_going=False, failures=[])
    assert str(err.value).startswith(str(paths[2]))


def test_longest_increasing_subsequence_is_longest():
    for values in list(itertools.product(range(4), repeat=6))[::7]:
        keep = rio._longest_increasing(values)
        assert all(values[a] < values[b] for a, b in zip(keep, keep[1:]))
        best = max(len(c) for r in range(7) for c in itertools.combinations(range(6), r)
                   if all(values[a] < values[b] for a, b in zip(c, c[1:])))
        assert len(keep) == best, values


# --- item 9: discovery ---------------------------------------------------------------------------
def test_raw_files_lists_near_misses_and_ignores_other_files(tmp_path):
    raw, paths = _folder(tmp_path, n=1)
    for name in ("a_raw.fits.gz", "b_raw.FITS", "c_raw.fit", "d_raw.fits.tmp", "README.txt",
                 "e_cal.fits"):
        (raw / name).write_bytes(b"x")
    names = [p.name for p in raw_files(raw.parent)]
    assert names == sorted([paths[0].name, "a_raw.fits.gz", "b_raw.FITS", "c_raw.fit",
                            "d_raw.fits.tmp"])
    failures = []
    read_all(raw_files(raw.parent), read_raw_dce, keep_going=True, failures=failures)
    assert len(failures) == 4 and all("name ends in" in f[1] for f in failures)


def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "x_raw.fits"
    os.mkfifo(fifo)

    def hang(*_):
        raise TimeoutError("read_raw_dce blocked on a named pipe")
    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(10)
    try:
        with pytest.raises(InputError, match="not a regular file \\(a named pipe\\)"):
            read_raw_dce(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_an_unreadable_raw_folder_is_a_permission_error_naming_it(tmp_path, monkeypatch):
    raw, _ = _folder(tmp_path, n=1)

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(rio.os, "scandir", denied)
    with pytest.raises(InputError, match="permission denied") as err:
        raw_files(raw.parent)
    assert str(err.value).startswith(str(raw))


def test_input_error_survives_pickling():
    err = pickle.loads(pickle.dumps(InputError("a_raw.fits", "bad")))
    assert isinstance(err, InputError) and str(err) == "a_raw.fits: bad"


def test_real_ssc_header_cards_are_accepted():
    """Every card of a real SSC header (tests/data/PROVENANCE.md) passes the type checks."""
    from pathlib import Path

    from reprocess.io import _card_images
    from reprocess.rawcheck import check_cards, check_wcs
    path = Path(__file__).parent / "data" / "ssc_irs_bcd_header.hdr"
    values = check_cards(path, _card_images(path, path.read_bytes()))
    assert values["AORKEY"] == 17756160 and values["DCENUM"] == 0     # AORKEY is a string there
    check_wcs(path, values, 24)          # its TAN-SIP WCS (1.84"/px, near the 24 um array's 2.55")
