"""Bad raw input: a one-line error naming the file and the problem, non-zero exit, nothing half-written."""
import shutil

import numpy as np
import pytest
from astropy.io import fits

from mips.cli import main


def _copy(obs70, tmp_path):
    dst = tmp_path / "obs"
    shutil.copytree(obs70 / "raw", dst / "raw")
    return dst, sorted((dst / "raw").glob("*_raw.fits"))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _drop_keyword(path):
    with fits.open(path, mode="update") as h:
        del h[0].header["MJD_OBS"]


def _wrong_shape(path):
    hdr = fits.getheader(path)
    fits.writeto(path, np.zeros((80, 16, 16), np.uint16), hdr, overwrite=True)


def _nans(path):
    hdr = fits.getheader(path)
    data = fits.getdata(path).astype(np.float32)
    data[-1, 3, 3] = np.nan
    fits.writeto(path, data, hdr, overwrite=True)


@pytest.mark.parametrize("damage, problem", [
    (_truncate, "not a readable FITS file"),
    (_drop_keyword, "missing keyword(s) MJD_OBS"),
    (_wrong_shape, "frame shape (16, 16)"),
    (_nans, "NaN"),
])
def test_bad_file_fails_clearly(obs70, tmp_path, capsys, damage, problem):
    obs, files = _copy(obs70, tmp_path)
    damage(files[3])
    before = files[3].read_bytes()
    status = main(["reprocess", str(obs)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert len(err) == 1 and files[3].name in err[0] and problem in err[0], err
    assert not (obs / "bcd").exists() or not any((obs / "bcd").iterdir())
    assert files[3].read_bytes() == before          # input untouched


def test_keep_going_processes_the_rest_and_lists_failures(obs70, tmp_path, capsys):
    obs, files = _copy(obs70, tmp_path)
    _drop_keyword(files[0])
    _truncate(files[7])
    status = main(["reprocess", str(obs), "--keep-going"])
    err = capsys.readouterr().err
    assert status != 0
    assert files[0].name in err and files[7].name in err and "2 file(s) failed" in err
    bcds = sorted((obs / "bcd").glob("*_bcd.fits"))
    assert len(bcds) == 12 - 2 - 2    # 2 stim DCEs, 2 bad files (both sky DCEs)


def test_existing_products_are_not_overwritten(obs70, tmp_path, capsys):
    obs, _ = _copy(obs70, tmp_path)
    assert main(["reprocess", str(obs)]) == 0
    first = sorted((obs / "bcd").glob("*_bcd.fits"))[0]
    stamp = first.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["reprocess", str(obs)]) == 0                  # complete and valid: skipped
    assert "skipped" in capsys.readouterr().out
    assert main(["reprocess", str(obs), "--jump-threshold", "5"]) == 2     # stale: refused
    err = capsys.readouterr().err
    assert "--overwrite" in err and "configuration" in err and "jump_threshold" in err, err
    assert first.stat().st_mtime_ns == stamp
    assert main(["reprocess", str(obs), "--jump-threshold", "5", "--overwrite"]) == 0
    assert first.stat().st_mtime_ns != stamp


def test_missing_folder(tmp_path, capsys):
    assert main(["reprocess", str(tmp_path / "nowhere")]) == 2
    assert "no *_raw.fits files" in capsys.readouterr().err


def _drop_csm(path):
    with fits.open(path, mode="update") as h:
        del h[0].header["CSM_PRED"]


def _wrong_planes(path):
    hdr = fits.getheader(path)
    fits.writeto(path, np.zeros((3, 128, 128), np.float32), hdr, overwrite=True)


@pytest.mark.parametrize("damage, problem", [
    (_truncate, "not a readable FITS file"),
    (_drop_csm, "missing keyword(s) CSM_PRED"),
    (_wrong_planes, "expected (2, 128, 128) planes"),
    (_nans, "NaN"),
])
def test_bad_24um_file_fails_clearly(obs24, tmp_path, capsys, damage, problem):
    obs, files = _copy(obs24, tmp_path)
    damage(files[2])
    status = main(["reprocess", str(obs)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert len(err) == 1 and files[2].name in err[0] and problem in err[0], err
    assert not (obs / "bcd").exists()
    assert main(["reprocess", str(obs), "--keep-going"]) == 1
    assert len(list((obs / "bcd").glob("*_bcd.fits"))) == 5 - 1 - 1    # DCENUM 0 dropped, 1 bad


def test_parallel_folders_give_the_same_products(obs70, obs24, tmp_path, capsys):
    import filecmp
    serial = [_copy(o, tmp_path / f"s{i}")[0] for i, o in enumerate((obs70, obs24))]
    parallel = [_copy(o, tmp_path / f"p{i}")[0] for i, o in enumerate((obs70, obs24))]
    broken = tmp_path / "broken"
    (broken / "raw").mkdir(parents=True)
    assert main(["reprocess", *map(str, serial)]) == 0
    assert main(["reprocess", "--workers", "2", "--keep-going", *map(str, parallel), str(broken)]) == 1
    assert "no *_raw.fits files" in capsys.readouterr().err
    for s, p in zip(serial, parallel):
        names = sorted(f.name for f in (s / "bcd").iterdir())
        assert names == sorted(f.name for f in (p / "bcd").iterdir()) and names
        for n in names:
            assert filecmp.cmp(s / "bcd" / n, p / "bcd" / n, shallow=False), n
