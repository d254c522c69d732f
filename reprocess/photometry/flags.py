"""Quality flags of a photometry catalogue (bits of the ``flags`` column).

A flagged measurement whose number would be wrong is NaN, never a number: an aperture that leaves
the image or the mosaic's coverage, or holds a masked pixel, gets its bit and ``flux = NaN``.  The
other bits are warnings on a number that is still the best estimate.
"""
from __future__ import annotations

from enum import IntFlag

__all__ = ["FLAG_DESCRIPTIONS", "PhotFlag", "flag_meta"]


class PhotFlag(IntFlag):
    """Bits of the ``flags`` column."""

    OFF_IMAGE = 1          # aperture / fit region (partly) outside the image: NaN (aperture)
    NO_COVERAGE = 2        # pixels the mosaic has no data for (COV = 0, NaN) in the aperture: NaN
    MASKED = 4             # masked pixels (user mask, invalid UNC) in the aperture: NaN
    FEW_SKY_PIXELS = 8     # sky annulus with too few usable pixels: NaN
    BLENDED = 16           # fitted together with other sources (PRF) / a neighbour in the aperture
    POOR_FIT = 32          # PRF fit chi^2 beyond what the noise allows
    POSITION_LIMIT = 64    # PRF fit position hit the allowed shift from the detection
    NOT_CONVERGED = 128    # PRF position fit still moving after the last iteration
    FEW_FIT_PIXELS = 256   # PRF fit region partly without data (edge, coverage gap)
    FIXED_POSITION = 512   # PRF fit at the detected position (too faint to fit a position)


FLAG_DESCRIPTIONS = {
    PhotFlag.OFF_IMAGE: "aperture or fit region (partly) outside the image (aperture flux NaN)",
    PhotFlag.NO_COVERAGE: "aperture holds pixels without mosaic coverage (flux NaN)",
    PhotFlag.MASKED: "aperture holds masked pixels or pixels without a valid UNC (flux NaN)",
    PhotFlag.FEW_SKY_PIXELS: "sky annulus has too few usable pixels (flux NaN)",
    PhotFlag.BLENDED: "PRF: fitted jointly with neighbours; aperture: another source inside the aperture",
    PhotFlag.POOR_FIT: "PRF fit reduced chi^2 above 1 + 5 sigma of its noise-only spread",
    PhotFlag.POSITION_LIMIT: "PRF position held at its largest allowed shift from the detection",
    PhotFlag.NOT_CONVERGED: "PRF position fit not converged",
    PhotFlag.FEW_FIT_PIXELS: "PRF fit region less than 70 % covered by valid pixels",
    PhotFlag.FIXED_POSITION: "PRF flux at the detected position (S/N too low to fit a position)",
}


def flag_meta() -> dict[str, str]:
    """``{"1 OFF_IMAGE": description, ...}`` for a catalogue's metadata."""
    return {f"{int(f)} {f.name}": text for f, text in FLAG_DESCRIPTIONS.items()}
