"""Provenance is never cut: long HISTORY text continues on further cards (fast writer and raw files)."""
import numpy as np
from astropy.io import fits
from hypothesis import given, settings, strategies as st

from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.fitswrite import format_card, write_image

printable = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=400)


@settings(max_examples=150, deadline=None)
@given(text=printable)
def test_long_history_text_survives_a_round_trip(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("h") / "a.fits"
    write_image(path, np.zeros((2, 2), np.float32),
                [("DCENUM", 1, ""), ("HISTORY", text, ""), ("COMMENT", "end", "")], overwrite=False)
    with fits.open(path) as h:
        h.verify("exception")
        hdr = h[0].header
    assert "".join(hdr["HISTORY"]) == text.rstrip()
    assert list(hdr["COMMENT"]) == ["end"] and hdr["DCENUM"] == 1


def test_every_card_is_80_characters():
    images = format_card("HISTORY", "word " * 60)
    assert len(images) % 80 == 0 and len(images) // 80 == 5   # 300 characters -> 5 cards of <= 72


def test_raw_file_provenance_is_complete(tmp_path):
    """The simulator's provenance line (longer than one card) reads back whole from a raw file."""
    simulate(load_config(band=160, n_dce=1, seed=2), tmp_path)
    hdr = fits.getheader(next((tmp_path / "raw").glob("*_raw.fits")))
    text = "".join(hdr["HISTORY"])
    assert len(text) > 72
    assert text.startswith("mipssim: ") and "seed 2" in text and text.endswith("of truth.h5)")
