"""Configuration: a typed schema (wrong types and ranges refused with the file and key), options
for another band refused, ``validate`` outputs not overwritten, calibration-product loading errors.

Issue 10, "What failed" item 10 and the products part of item 9.
"""
import dataclasses
import math
import shutil
import typing

import pytest
from astropy.io import fits

from calibration.configuration import resolve
from mips.cli import main
from mipssim.config import SimConfig, load_config
from reprocess.fitswrite import format_cards
from reprocess.ge_pipeline import ReprocessConfig
from reprocess.si_pipeline import SiConfig


def _copy(obs, tmp_path):
    dst = tmp_path / "obs"
    shutil.copytree(obs / "raw", dst / "raw")
    return dst


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("INFO")]
    assert len(err) == 1, err
    return err[0]


# --- the schema, field by field: every field of every configuration, every kind of wrong value

_WRONG = {int: ["ten", 3.5, True, [1]], float: ["4.5", True, [1.0], math.nan, math.inf],
          bool: ["no", "true", 1, 0], str: [1, True, ["a"]], list: ["a,b", 1], tuple: ["a,b", 1]}


def _base(hint):
    """The non-None type of a field's type hint (``float | None`` -> float)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _cases():
    for cls in (SimConfig, ReprocessConfig, SiConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            for value in _WRONG.get(_base(hints[f.name]), []):
                yield pytest.param(cls, f.name, value, id=f"{cls.__name__}.{f.name}={value!r}")


@pytest.mark.parametrize("cls, key, value", list(_cases()))
def test_every_field_refuses_a_wrong_type_naming_the_key(cls, key, value):
    with pytest.raises(ValueError) as exc:
        resolve(cls, None, {key: value})
    msg = str(exc.value)
    assert key in msg and len(msg.splitlines()) == 1, msg


def test_schema_accepts_right_types_and_converts_ints_to_floats(tmp_path):
    toml = tmp_path / "ok.toml"
    toml.write_text("read_noise_dn = 20\noverhead_s = 2\ninclude_stim = false\n"
                    "dither_pix = [[0.0, 0.0], [1, 2]]\n")
    cfg = load_config(toml, n_dce=4)
    assert cfg.read_noise_dn == 20.0 and isinstance(cfg.read_noise_dn, float)
    assert isinstance(cfg.overhead_s, float) and cfg.include_stim is False and cfg.n_dce == 4
    si = resolve(SiConfig, None, {"off": ["droop"]})
    assert si.off == ("droop",)
    assert resolve(ReprocessConfig).products is None                 # Optional default kept


@pytest.mark.parametrize("text, key", [
    ('n_dce = "ten"', "n_dce"), ("n_dce = 3.5", "n_dce"), ('seed = "abc"', "seed"),
    ('include_stim = "no"', "include_stim"), ("read_noise_dn = -5", "read_noise_dn"),
    ("seed = -1", "seed"), ("n_dce = 0", "n_dce"), ("dec_deg = 95.0", "dec_deg"),
    ('band = "x"', "band"), ("flux_min_jy = 3.0", "flux_min_jy"), ("dither_pix = [[1.0]]", "dither_pix"),
])
def test_simulate_refuses_bad_toml_naming_file_and_key(tmp_path, capsys, text, key):
    toml = tmp_path / "sim.toml"
    toml.write_text(text + "\n")
    out = tmp_path / "out"
    assert main(["simulate", "--config", str(toml), "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert str(toml) in line and key in line, line
    assert not out.exists()                                          # nothing written


def test_negative_seed_on_the_command_line_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["simulate", "--seed", "-1", "--n-dce", "4", "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "seed" in line and ">= 0" in line, line
    assert not out.exists()


@pytest.mark.parametrize("text, key", [
    ('jump_threshold = "4.5"', "jump_threshold"), ('nonlinearity = "no"', "nonlinearity"),
    ("min_segment_reads = 4.0", "min_segment_reads"), ("jump_threshold = -1.0", "jump_threshold"),
    ('stim_mode = "linear"', "stim_mode"),
])
def test_reprocess_refuses_bad_toml_naming_file_and_key(obs70, tmp_path, capsys, text, key):
    obs = _copy(obs70, tmp_path)
    toml = tmp_path / "rep.toml"
    toml.write_text(text + "\n")
    assert main(["reprocess", str(obs), "--config", str(toml)]) != 0
    line = _one_error_line(capsys)
    assert str(toml) in line and key in line, line
    assert not (obs / "bcd").exists() and sorted(p.name for p in obs.iterdir()) == ["raw"]


def test_reprocess_24um_refuses_bad_toml(obs24, tmp_path, capsys):
    obs = _copy(obs24, tmp_path)
    toml = tmp_path / "rep.toml"
    toml.write_text('off = "droop"\n')                               # a string, not a list
    assert main(["reprocess", str(obs), "--config", str(toml)]) != 0
    line = _one_error_line(capsys)
    assert str(toml) in line and "off" in line, line


@pytest.mark.parametrize("which, args, flag, band", [
    ("70", ["--off", "droop"], "--off", "24 um"),
    ("70", ["--keep-first-frame"], "--keep-first-frame", "24 um"),
    ("24", ["--stim", "constant"], "--stim", "70"),
    ("24", ["--jump-threshold", "5"], "--jump-threshold", "70"),
])
def test_option_for_another_band_is_refused(obs70, obs24, tmp_path, capsys, which, args, flag, band):
    obs = _copy(obs70 if which == "70" else obs24, tmp_path)
    assert main(["reprocess", str(obs), *args]) != 0
    line = _one_error_line(capsys)
    assert flag in line and band in line and str(obs) in line, line
    assert not (obs / "bcd").exists()


def test_validate_does_not_overwrite_its_outputs(obs70, tmp_path, capsys):
    obs = _copy(obs70, tmp_path)
    shutil.copy(obs70 / "truth.h5", obs / "truth.h5")
    assert main(["reprocess", str(obs)]) == 0
    mine = tmp_path / "mine.json"
    mine.write_text("keep me")
    capsys.readouterr()
    assert main(["validate", str(obs), "--json", str(mine)]) == 2
    assert str(mine) in _one_error_line(capsys) and mine.read_text() == "keep me"
    png = obs / "validation.png"
    png.write_bytes(b"keep me too")
    assert main(["validate", str(obs), "--json", str(tmp_path / "new.json")]) == 2
    line = _one_error_line(capsys)
    assert str(png) in line and "--overwrite" in line and not (tmp_path / "new.json").exists()
    assert main(["validate", str(obs), "--json", str(mine), "--overwrite"]) in (0, 1)
    assert mine.read_text().startswith("{") and png.read_bytes() != b"keep me too"


# --- calibration products (issue item 9)

def test_products_file_that_is_not_fits_is_named(obs70, obs24, tmp_path, capsys):
    junk = tmp_path / "junk_cal.fits"
    junk.write_text("not a FITS file\n")
    for src in (obs70, obs24):
        obs = _copy(src, tmp_path / src.name)
        assert main(["reprocess", str(obs), "--products", str(junk)]) != 0
        line = _one_error_line(capsys)
        assert str(junk) in line and "FITS" in line, line


def test_non_ascii_products_path_works_and_is_recorded(obs70, tmp_path, capsys):
    from calibration.products import default_products_path
    cal = tmp_path / "étalonnage" / "mips70_cal.fits"
    cal.parent.mkdir()
    shutil.copy(default_products_path(70), cal)
    obs = _copy(obs70, tmp_path)
    assert main(["reprocess", str(obs), "--products", str(cal)]) == 0, capsys.readouterr().err
    bcd = sorted((obs / "bcd").glob("*_bcd.fits"))[0]
    with fits.open(bcd) as hdul:
        hdul.verify("exception")                                      # a valid (ASCII) header
        assert any("products" in str(h) for h in hdul[0].header["HISTORY"])
    card = format_cards([("HISTORY", "products = /data/\u00e9talonnage", ""), ("CALFILE", "\u00e9", "")])
    assert card.isascii() and len(card) == 160 and "/data/\\xe9talonnage" in card


@pytest.mark.parametrize("cls, key, value", [
    (SimConfig, "pointing_jitter_arcsec", -0.3), (SimConfig, "resp_step_rate_per_hr", -1.0),
    (SimConfig, "resp_step_size", -0.02), (SimConfig, "first_stim_factor", 0.0),
    (ReprocessConfig, "stim_min_snr", 0.0), (ReprocessConfig, "stim_tolerance_pix", -0.5),
    (ReprocessConfig, "first_stim", "sometimes"), (ReprocessConfig, "min_segment_reads", 1),
    (SiConfig, "latent_window_s", -1.0), (SiConfig, "latent_threshold_dn_s", -5.0)])
def test_out_of_range_values_are_refused_naming_the_key(cls, key, value):
    with pytest.raises(ValueError, match=key):
        resolve(cls, None, {key: value})
