"""The validation layer for raw MIPS DCEs: header types and ranges, data, WCS, file name.

An archive user's worst outcome is a BCD that is wrong while the run exits 0.
Most such paths start with a raw value that *looks* usable: ``STIMFLSH = 'F'``
(a non-empty string, hence true), ``SAMPTIME = T`` (``float(True) == 1``),
``DCENUM = -1`` (a valid index from the end), a ``uint8`` cube (wrapped DN),
a 24 um slope no A/D converter could produce.  The readers of
:mod:`reprocess.io` therefore pass every raw file through the checks here
before any value is used, and refuse, with one line naming the file and the
keyword, whatever is not what the SSC wrote [mips-facts 6; DESIGN.md "Raw DCE"]:

* every card parses, and the keywords the pipeline reads or copies into its
  products appear once, with the FITS type the SSC gives them (an integer is
  not a real, a logical is neither, a number is not a string);
* values lie in their physical range: SAMPTIME is the band's read time,
  EXPTIME agrees with NREADS x SAMPTIME, MJD_OBS falls within the Spitzer
  cryogenic mission, identity numbers are non-negative;
* the data are integer DN within the A/D range (Ge cubes, the 24 um
  difference plane) or a slope the A/D range permits (the 24 um slope plane);
* the celestial WCS is a TAN (optionally SIP) projection with a non-singular
  CD (or CDELT/PC) matrix of about the array's pixel scale and a valid CRVAL;
* an SSC-style file name agrees with CHNLNUM, AORKEY, EXPID and DCENUM.

Everything here is a pure function of card images, their values (or an
array) and the path used in messages; the folder-level checks (majority band, duplicates, time order)
live with :func:`reprocess.io.read_all`.
"""
from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from astropy.io import fits

from calibration.instrument import band_spec
from calibration.si_as import sur_weight

__all__ = ["InputError", "BAND_OF_CHANNEL", "card_value", "MJD_FIRST", "MJD_LAST", "SAMPTIME_REL_TOL",
           "EXPTIME_TOL_READS", "PIXEL_SCALE_RANGE", "DATE_OBS_TOL_S", "SSC_NAME",
           "check_cards", "check_header", "check_samptime", "check_exptime", "check_wcs", "check_name",
           "check_ge_data", "check_si_data", "si_slope_limit"]

BAND_OF_CHANNEL = {1: 24, 2: 70, 3: 160}

# MJD_OBS window: Spitzer's launch (2003-08-25 = MJD 52876) to 2010-01-01 (MJD 55197).  MIPS
# observed until the cryogen ran out on 2009-05-15 (MJD 54966); the window ends a little later so
# that only impossible dates are refused (a zeroed, swapped or JD-for-MJD value).
MJD_FIRST = 52876.0
MJD_LAST = 55197.0
# SAMPTIME is set by the instrument clock, so it equals the band's read time
# (calibration.instrument) exactly; the tolerance only admits values printed to ~3 significant
# digits (0.131 for 0.131072 s).  UNCONFIRMED against archive headers.
SAMPTIME_REL_TOL = 1.0e-3
# EXPTIME may be NREADS x SAMPTIME or the (NREADS - 1) x SAMPTIME between first and last read;
# anything further than one read time from NREADS x SAMPTIME contradicts the data.  UNCONFIRMED.
EXPTIME_TOL_READS = 1.0
# CD-matrix pixel scale / the band's nominal pixel size: admits the 70 um fine-scale mode
# (4.99"/px for 9.98") and the 24 um scale variation; refuses e.g. a CD matrix in arcsec.
PIXEL_SCALE_RANGE = (0.3, 3.0)
# DATE_OBS gives the DCE start (UTC); MJD_OBS is the DCE start in our files, but an SSC header's
# MJD_OBS is a "trimmed-average" over the DCE: 37.6 s after DATE_OBS in the real IRS header of
# shared/data/real/headers (60 s ramps).  They must agree to within this many seconds, which covers
# the longest MIPS DCE (30 s at 24 um) either way; beyond it one of them is wrong.  UNCONFIRMED.
DATE_OBS_TOL_S = 120.0

# SSC raw file name: SPITZER_M<ch>_<AORKEY>_<EXPID:04d>_<DCENUM:04d>_<version>_raw.fits
SSC_NAME = re.compile(r"^SPITZER_M(\d+)_(\d+)_(\d+)_(\d+)_(\d+)_raw\.fits$")
_CHANNEL_PREFIX = re.compile(r"^SPITZER_M(\d+)_")

_INT, _REAL, _BOOL, _STR = "an integer", "a real number", "a logical (T/F)", "a string"
# The SSC writes AORKEY as a string of digits (AORKEY = '17756160' in the real header of
# shared/data/real/headers); an integer is accepted too, anything else is refused.
_KEY = "an integer or a string of digits"
# FITS type of every keyword the pipeline reads or copies into a product (checked where present)
KEYWORD_TYPES = {
    "TELESCOP": _STR, "INSTRUME": _STR, "CHNLNUM": _INT, "AORKEY": _KEY, "EXPID": _INT,
    "DCENUM": _INT, "AOT_TYPE": _STR, "EXPTYPE": _STR, "FOVNAME": _STR, "SAMPTIME": _REAL,
    "EXPTIME": _REAL, "NRAMPS": _INT, "NREADS": _INT, "MJD_OBS": _REAL, "DATE_OBS": _STR,
    "STIMFLSH": _BOOL, "PA": _REAL, "PXSCAL1": _REAL, "PXSCAL2": _REAL, "CSM_PRED": _REAL,
    "RDOUTMOD": _STR, "SATTHDIF": _REAL,
    "CTYPE1": _STR, "CTYPE2": _STR, "CRPIX1": _REAL, "CRPIX2": _REAL, "CRVAL1": _REAL,
    "CRVAL2": _REAL, "CD1_1": _REAL, "CD1_2": _REAL, "CD2_1": _REAL, "CD2_2": _REAL,
    "CDELT1": _REAL, "CDELT2": _REAL, "PC1_1": _REAL, "PC1_2": _REAL, "PC2_1": _REAL,
    "PC2_2": _REAL, "RADESYS": _STR, "EQUINOX": _REAL, "A_ORDER": _INT, "B_ORDER": _INT,
    "AP_ORDER": _INT, "BP_ORDER": _INT,
}
_SIP_TERM = re.compile(r"^(A|B|AP|BP)_\d+_\d+$")
_CD_KEYS = ("CD1_1", "CD1_2", "CD2_1", "CD2_2")
_PC_KEYS = ("PC1_1", "PC1_2", "PC2_1", "PC2_2")


class InputError(ValueError):
    """A raw input that cannot be processed; ``str()`` is a one-line '<file>: <problem>'."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):   # picklable, so worker processes can report it
        return (type(self), (self.path, self.problem))


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
    return (_is_int(v) or isinstance(v, (float, np.floating))) and math.isfinite(v)


_TYPE_TEST = {_INT: _is_int, _KEY: lambda v: _is_int(v) or (isinstance(v, str) and v.strip().isdigit()),
              _REAL: _is_real, _BOOL: lambda v: isinstance(v, (bool, np.bool_)),
              _STR: lambda v: isinstance(v, str)}


def _watched(key: str) -> bool:
    return key in KEYWORD_TYPES or bool(_SIP_TERM.match(key))


# A value card in the fixed format that covers SSC headers: logical, integer, real or plain string,
# then an optional comment.  Anything else is left to astropy's full parser (which refuses what
# it cannot parse); this fast path only spares astropy's ~10 us per card on the common cases.
_SIMPLE_VALUE = re.compile(r"""=[ ]+(?:(?P<bool>[TF])|(?P<int>[+-]?\d+)
                               |(?P<real>[+-]?(?:\d+\.?\d*|\.\d+)(?:[ED][+-]?\d+)?)
                               |'(?P<str>[^']*)')[ ]*(?:/.*)?$""", re.X)
_COMMENTARY = ("", "COMMENT", "HISTORY", "CONTINUE")


def card_value(image: str):
    """Value of one 80-character value card, as astropy reads it; InputError if unparsable."""
    m = _SIMPLE_VALUE.match(image, 8)
    if m is not None:
        if m["bool"] is not None:
            return m["bool"] == "T"
        if m["int"] is not None:
            return int(m["int"])
        if m["real"] is not None:
            return float(m["real"].replace("D", "E"))
        return m["str"].rstrip()
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # astropy warns (then guesses) on bad cards
        try:
            return fits.Card.fromstring(image).value
        except Exception:                       # noqa: BLE001 -- astropy raises several kinds
            raise ValueError(image.rstrip()) from None


def check_cards(path, cards) -> dict:
    """Every value card parses; watched keywords appear once and have their FITS type.

    ``cards`` are the primary header's 80-character card images, as in the file.
    Returns the values by keyword (the first card of each), for the other checks.

    Raises
    ------
    InputError
        Naming the first offending keyword.
    """
    counts: Counter = Counter()
    values: dict = {}
    for image in cards:
        key = image[:8].rstrip()
        if key in _COMMENTARY:
            continue
        try:
            value = card_value(image)
        except ValueError:           # a damaged card anywhere: the file is not what it claims
            raise InputError(path, f"unparsable header card {image.rstrip()!r}") from None
        counts[key] += 1
        values.setdefault(key, value)
        if not _watched(key):
            continue
        expected = KEYWORD_TYPES.get(key, _REAL)
        if value is None or isinstance(value, fits.card.Undefined):
            raise InputError(path, f"keyword {key} has no value")
        if not _TYPE_TEST[expected](value):
            raise InputError(path, f"keyword {key} = {value!r} is not {expected}")
        if expected is _KEY and counts[key] == 1:
            values[key] = int(value)
    repeated = sorted(k for k, n in counts.items() if n > 1 and _watched(k))
    if repeated:
        raise InputError(path, f"keyword(s) {', '.join(repeated)} appear more than once")
    return values


def check_header(path, values: Mapping, required, channels) -> int:
    """Presence, types and ranges of the identity keywords; returns the band (um).

    ``values`` are the header's values as :func:`check_cards` returns them;
    ``channels`` the CHNLNUM values the calling reader accepts.
    """
    chnl = values.get("CHNLNUM")
    if chnl is not None and chnl not in channels:     # another array's file: say so first
        names = ", ".join(f"{c} ({BAND_OF_CHANNEL[c]} um)" for c in channels)
        what = f" ({BAND_OF_CHANNEL[chnl]} um)" if chnl in BAND_OF_CHANNEL else ""
        raise InputError(path, f"CHNLNUM={chnl}{what}: this reader takes channel {names}")
    missing = [k for k in required if k not in values]
    if missing:
        raise InputError(path, f"missing keyword(s) {', '.join(missing)}")
    if values["INSTRUME"].strip() != "MIPS":
        raise InputError(path, f"INSTRUME is {values['INSTRUME']!r}, not 'MIPS'")
    for key in ("AORKEY", "EXPID", "DCENUM"):
        if values[key] < 0:
            raise InputError(path, f"{key}={values[key]} is negative")
    mjd = values["MJD_OBS"]
    if not MJD_FIRST <= mjd <= MJD_LAST:
        raise InputError(path, f"MJD_OBS={mjd} is outside the Spitzer mission "
                               f"(MJD {MJD_FIRST:.0f}-{MJD_LAST:.0f})")
    if "DATE_OBS" in values:
        _check_date(path, values["DATE_OBS"], mjd)
    if "NRAMPS" in values and values["NRAMPS"] < 1:
        raise InputError(path, f"NRAMPS={values['NRAMPS']} is not positive")
    if "SATTHDIF" in values and not values["SATTHDIF"] > 0:
        raise InputError(path, f"SATTHDIF={values['SATTHDIF']} is not positive")
    return BAND_OF_CHANNEL[chnl]


def _check_date(path, date_obs: str, mjd: float) -> None:
    try:
        t = datetime.fromisoformat(date_obs.strip()).replace(tzinfo=timezone.utc)
    except ValueError:
        raise InputError(path, f"DATE_OBS={date_obs!r} is not an ISO date") from None
    mjd_date = (t - datetime(1858, 11, 17, tzinfo=timezone.utc)).total_seconds() / 86400.0
    if abs(mjd_date - mjd) * 86400.0 > DATE_OBS_TOL_S:
        raise InputError(path, f"DATE_OBS={date_obs!r} disagrees with MJD_OBS={mjd} "
                               f"by {abs(mjd_date - mjd) * 86400.0:.1f} s")


def check_samptime(path, values: Mapping, band: int) -> None:
    """SAMPTIME is the band's read time (within :data:`SAMPTIME_REL_TOL`)."""
    read_time = band_spec(band).read_time_s
    samptime = values["SAMPTIME"]
    if not abs(samptime / read_time - 1.0) <= SAMPTIME_REL_TOL:
        raise InputError(path, f"SAMPTIME={samptime} s: the {band} um array is read every "
                               f"{read_time} s")


def check_exptime(path, values: Mapping, nreads: int) -> None:
    """EXPTIME agrees with ``nreads`` x SAMPTIME (within :data:`EXPTIME_TOL_READS` reads)."""
    samptime, exptime = values["SAMPTIME"], values["EXPTIME"]
    if not abs(exptime - nreads * samptime) <= EXPTIME_TOL_READS * samptime:
        raise InputError(path, f"EXPTIME={exptime} s disagrees with NREADS x SAMPTIME = "
                               f"{nreads} x {samptime} s")


def check_wcs(path, values: Mapping, band: int) -> None:
    """A celestial TAN(-SIP) WCS with a non-singular matrix of about the band's pixel scale."""
    ctype = (values["CTYPE1"].strip().upper(), values["CTYPE2"].strip().upper())
    if ctype not in (("RA---TAN", "DEC--TAN"), ("RA---TAN-SIP", "DEC--TAN-SIP")):
        raise InputError(path, f"CTYPE1/2 = {ctype[0]!r}/{ctype[1]!r}: expected RA---TAN/DEC--TAN "
                               f"(optionally -SIP)")
    if ctype[0].endswith("-SIP"):
        absent = [k for k in ("A_ORDER", "B_ORDER") if k not in values]
        if absent:
            raise InputError(path, f"CTYPE is -SIP but {', '.join(absent)} missing")
    if any(k in values for k in _CD_KEYS):
        matrix = np.array([values.get(k, 0.0) for k in _CD_KEYS], dtype=float).reshape(2, 2)
    elif "CDELT1" in values and "CDELT2" in values:
        pc = np.array([values.get(k, float(k[2] == k[4])) for k in _PC_KEYS], dtype=float)
        matrix = np.diag([values["CDELT1"], values["CDELT2"]]) @ pc.reshape(2, 2)
    else:
        raise InputError(path, "no CD matrix (CD1_1..CD2_2) or CDELT1/2: the WCS has no scale")
    det = float(np.linalg.det(matrix))
    scale_arcsec = math.sqrt(abs(det)) * 3600.0
    nominal = band_spec(band).pixel_arcsec
    lo, hi = PIXEL_SCALE_RANGE
    if not lo * nominal <= scale_arcsec <= hi * nominal:
        raise InputError(path, f"WCS pixel scale {scale_arcsec:.4g} arcsec (CD/CDELT matrix) is not "
                               f"near the {band} um pixel size {nominal} arcsec")
    if not -90.0 <= values["CRVAL2"] <= 90.0:
        raise InputError(path, f"CRVAL2={values['CRVAL2']} is not a declination (-90..90 deg)")
    if not 0.0 <= values["CRVAL1"] <= 360.0:
        raise InputError(path, f"CRVAL1={values['CRVAL1']} is not a right ascension (0..360 deg)")


def check_name(path, values: Mapping) -> None:
    """An SSC-style file name agrees with CHNLNUM and, if complete, AORKEY/EXPID/DCENUM."""
    name = Path(path).name
    m = _CHANNEL_PREFIX.match(name)
    if m and int(m[1]) != values["CHNLNUM"]:
        raise InputError(path, f"file name says channel M{m[1]} but CHNLNUM={values['CHNLNUM']}")
    m = SSC_NAME.match(name)
    if m:
        for key, text in zip(("AORKEY", "EXPID", "DCENUM"), m.groups()[1:4]):
            if int(text) != values[key]:
                raise InputError(path, f"file name says {key} {int(text)} but the header "
                                       f"{key}={values[key]}")


def _check_dtype(path, data: np.ndarray) -> None:
    kind, size = data.dtype.kind, data.dtype.itemsize
    if kind not in "iuf" or (kind in "iu" and size < 2):
        raise InputError(path, f"raw data of type {data.dtype} (BITPIX {8 * size}) cannot hold "
                               f"16-bit DN")
    if kind == "f" and not np.isfinite(data).all():
        raise InputError(path, f"{int((~np.isfinite(data)).sum())} NaN/inf values in the raw data")


def _check_integer_dn(path, data: np.ndarray, lo: float, hi: float, what: str) -> None:
    if data.dtype.kind == "f":
        frac = int(np.count_nonzero(data != np.round(data)))
        if frac:
            raise InputError(path, f"{frac} {what} values with fractional DN (raw data are integer DN)")
    below, above = int(np.count_nonzero(data < lo)), int(np.count_nonzero(data > hi))
    if below:
        raise InputError(path, f"{below} {what} values below {lo:g} DN (min {data.min():g})")
    if above:
        raise InputError(path, f"{above} {what} values above the A/D full scale {hi:g} DN "
                               f"(max {data.max():g})")


def check_ge_data(path, data: np.ndarray, band: int) -> None:
    """A Ge cube holds integer DN within the A/D range [0, adc_max_dn]."""
    _check_dtype(path, data)
    _check_integer_dn(path, data, 0, band_spec(band).adc_max_dn, "raw")


def si_slope_limit(nreads: int, adc_max_dn: float) -> float:
    """Largest |on-board SUR slope| (DN per sample) of ``nreads`` reads within [0, adc_max_dn].

    The slope is ``sum_k w_k read_k`` with ``sum_k w_k = 0``; over reads in
    ``[0, A]`` its maximum is ``A`` times the sum of the positive weights.
    """
    w = sur_weight(nreads)
    return float(adc_max_dn * w[w > 0].sum())


def check_si_data(path, planes: np.ndarray, nreads: int) -> None:
    """24 um planes: a slope the A/D range permits, and an integer-DN read2 - read1 difference."""
    _check_dtype(path, planes)
    adc = band_spec(24).adc_max_dn
    limit = si_slope_limit(nreads, adc)
    beyond = int(np.count_nonzero(np.abs(planes[0]) > limit))
    if beyond:
        raise InputError(path, f"{beyond} slope values beyond +-{limit:.0f} DN/sample, more than a "
                               f"{adc} DN A/D range permits over {nreads} samples "
                               f"(max |slope| {np.abs(planes[0]).max():g})")
    _check_integer_dn(path, planes[1], -adc, adc, "difference-plane")
