"""A small, fast writer of single-image FITS files.

astropy builds and verifies a ``Header`` object card by card, which costs
~10 ms per product file; a 24 um observation writes three products per DCE,
so that alone would cap reprocessing near 30 DCEs/s (``benchmarks/bench_si.py``
measures both).  Products here are simple images whose cards we build
ourselves, so we format the 80-character cards directly.  Files are standard
FITS (checked against astropy in ``tests/test_fitswrite.py``); reading stays
with astropy.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["format_card", "format_cards", "write_image"]

_BITPIX = {np.dtype("float32"): -32, np.dtype("float64"): -64, np.dtype("int16"): 16,
           np.dtype("int32"): 32, np.dtype("uint8"): 8}
_BLOCK = 2880


def _value(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return f"{'T' if v else 'F':>20}"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):>20d}"
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            raise ValueError(f"FITS cards cannot hold {v!r}")
        s = repr(float(v)).upper()
        if "." not in s and "INF" not in s:
            s = s.replace("E", ".0E") if "E" in s else s + ".0"
        return f"{s:>20}"
    text = str(v).replace("'", "''")
    if len(text) > 68:
        raise ValueError(f"string value too long for one FITS card ({len(text)} > 68 characters)")
    return f"'{text:<8}'".ljust(20)


def _long_string(key: str, text: str, comment: str) -> str:
    """A string value longer than one card: the FITS long-string (``CONTINUE``) convention."""
    chunks, rest = [], text
    while rest:
        n = 60
        while len(rest[:n].replace("'", "''")) > 66:
            n -= 1
        chunks.append(rest[:n].replace("'", "''"))
        rest = rest[n:]
    cards = [f"{key:<8}= '{chunks[0]}&'"] + [f"CONTINUE  '{c}&'" for c in chunks[1:-1]]
    cards.append(f"CONTINUE  '{chunks[-1]}'" + (f" / {comment}" if comment else ""))
    return "".join(c[:80].ljust(80) for c in cards)


def format_card(key: str, value=None, comment: str = "") -> str:
    """One 80-character header card (``HISTORY``/``COMMENT`` take their text as ``value``).

    Commentary text longer than a card's 72 characters continues on further
    cards of the same keyword (as astropy writes it), so joining the cards'
    texts gives it back: the result is then several cards' images.
    """
    key = key.upper()
    if key in ("HISTORY", "COMMENT", ""):
        return "".join(f"{key:<8}{chunk}".ljust(80) for chunk in _commentary_chunks(str(value)))
    if len(key) > 8:
        raise ValueError(f"keyword {key!r} is longer than 8 characters")
    if isinstance(value, str) and len(value.replace("'", "''")) > 68:
        return _long_string(key, value, comment)
    card = f"{key:<8}= {_value(value)}"
    if comment:
        card += f" / {comment}"
    return card[:80].ljust(80)


def _commentary_chunks(text: str) -> list[str]:
    """``text`` cut into pieces of at most 72 characters whose concatenation is ``text.rstrip()``.

    Readers strip a card's trailing blanks, so a piece never ends in a blank
    (the blank starts the next piece instead) unless it is all blanks.
    """
    text = text.rstrip()
    chunks = []
    while text:
        piece = text[:72]
        if piece.strip():
            piece = piece.rstrip()
        chunks.append(piece)
        text = text[len(piece):]
    return chunks or [""]


def format_cards(cards) -> str:
    """Concatenated card images of ``cards``: (key, value, comment) tuples or ready 80-char strings.

    FITS headers are ASCII: non-ASCII text in a tuple (e.g. a path) is written
    with Python's backslash escapes (``'\\xe9'`` for e-acute).
    """
    return "".join(c if isinstance(c, str) else format_card(*map(_ascii, c)) for c in cards)


def write_image(path: str | os.PathLike, data: np.ndarray, cards, *, overwrite: bool,
                atomic: bool = True) -> None:
    """Write ``data`` (2-D or 3-D) with extra ``cards`` atomically.

    ``cards`` are (key, value, comment) tuples or ready card images (strings whose
    length is a multiple of 80, e.g. ``astropy.io.fits.Card.image`` of a card copied
    from an input file, or the output of :func:`format_cards`).  ``atomic``
    writes through a temporary name; a caller writing into a staging folder
    that is renamed as a whole (:func:`reprocess.io.staged_output`) can skip it.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (use --overwrite to replace it)")
    data = np.asarray(data)
    try:
        bitpix = _BITPIX[data.dtype]
    except KeyError:
        raise ValueError(f"cannot write dtype {data.dtype} to FITS") from None
    lines = [format_card("SIMPLE", True, "conforms to FITS standard"),
             format_card("BITPIX", bitpix, "array data type"),
             format_card("NAXIS", data.ndim, "number of array dimensions")]
    lines += [format_card(f"NAXIS{i + 1}", n) for i, n in enumerate(data.shape[::-1])]
    lines.append(format_card("EXTEND", True))
    lines.append(format_cards(cards))
    lines.append("END".ljust(80))
    header = "".join(lines).encode("ascii")
    header += b" " * (-len(header) % _BLOCK)
    body = data.astype(data.dtype.newbyteorder(">"), copy=False).tobytes()
    body += b"\0" * (-len(body) % _BLOCK)
    tmp = path.with_name(path.name + ".tmp") if atomic else path
    with open(tmp, "wb") as fh:
        fh.write(header)
        fh.write(body)
    if atomic:
        os.replace(tmp, path)


def _ascii(value):
    """``value`` with non-ASCII characters of a string backslash-escaped (other types unchanged)."""
    return value.encode("ascii", "backslashreplace").decode("ascii") if isinstance(value, str) else value
