"""Bit assignments of the Ge permanent mask (pmask) and of BCD bit masks (bmask).

The pmask bits follow the SSC Ge pmask [mips-facts 6.2]: 2 noisy pixel, 3 bad
electronic nonlinearity, 8 bad half of the 70 um array, 14 bad pixel.  The
SSC's MIPS bmask tables (HB 6.6/6.7) were not seen, so the BCD bits follow the
SSC Si/IRS convention where a meaning matches and are otherwise our own
(UNCONFIRMED against the archive); README.md documents the table.
"""
from __future__ import annotations

__all__ = ["PMASK", "BMASK", "BBMSK", "PMASK_FATAL"]

PMASK = {
    "NOISY": 1 << 2,
    "BAD_ENL": 1 << 3,
    "BAD_HALF": 1 << 8,
    "BAD_PIXEL": 1 << 14,
}

# Pixels with any of these pmask bits are not used [SSC pmask page: 70 um 16644 = bits 2, 8, 14]
PMASK_FATAL = PMASK["NOISY"] | PMASK["BAD_HALF"] | PMASK["BAD_PIXEL"]

BMASK = {
    "SATURATED": 1 << 2,     # at least one read at or above the saturation level
    "JUMP": 1 << 3,          # a jump (cosmic ray) found along the ramp
    "ENL_FAILED": 1 << 4,    # nonlinearity not invertible for some read (dropped)
    "NO_SLOPE": 1 << 5,      # no segment with enough good reads: no slope
    "STIM_NEAREST": 1 << 6,  # responsivity from the nearest flash only (no bracketing pair)
    "NO_STIM": 1 << 7,       # no valid stim-minus-background for this pixel: uncalibrated
    "SHORT_RAMP": 1 << 9,    # slope from fewer reads than the DCE had (jumps, saturation)
    "LEAK": 1 << 10,         # 160 um: near a hot source whose near-IR leak ghost is predicted
    "RESP_STEP": 1 << 11,    # between two flashes that straddle a responsivity step (an anneal)
    "STIM_LATENT": 1 << 12,  # the first sky DCE after a stim flash: its latent may remain [HB 6.5]
    "PMASK": 1 << 14,        # a fatal pmask bit is set
}


# 24 um BCD bit mask (_bbmsk): SSC Si convention where it matches (1 latent, 2 saturation)
BBMSK = {
    "LATENT": 1 << 1,           # a bright source was on this pixel within the latent window
    "SATURATED": 1 << 2,        # slope replaced by the read2 - read1 difference
    "FLAT_NEAREST": 1 << 7,     # no flat at this scan-mirror position: nearest one used
    "SATURATED_HARD": 1 << 10,  # even the difference image saturated: value unreliable
    "PERSISTENT_LATENT": 1 << 11,  # a very bright source sat here within days: dark latent
    #                               (1-2 % low, ~10 h) or long bright latent (~0.5 %, days)
    "PMASK": 1 << 14,           # permanently bad pixel
}
