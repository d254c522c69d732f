"""Simulated calibration campaigns: the observations the instrument team calibrated from.

Each module plans and simulates one kind of calibration observation with the
ordinary simulator (same detector, same effects), writing an observation
folder (``raw/`` + ``truth.h5``) whose truth also records, under
``/calibration``, the true maps and scalars the campaign should recover.
"""

import numpy as np

__all__ = ["aor_seed"]


def aor_seed(seed: int, kind: str, k: int = 0) -> int:
    """Seed of AOR ``k`` of ``kind`` in the campaign of ``seed``.

    Independent across campaigns, kinds and AORs: campaign ``seed``'s AORs share no random
    stream with campaign ``seed + 1``'s (a plain ``seed + k`` would give star 1 of campaign 1
    and star 0 of campaign 2 the same cosmic rays and noise, so coverage counted over
    consecutive campaign seeds would count the same draws several times).
    """
    tag = sum(ord(c) * 31 ** i for i, c in enumerate(kind)) % 100003
    return int(np.random.SeedSequence([int(seed), tag, int(k)]).generate_state(1)[0] % 2 ** 31)
