"""The 70 um dead side-A readout (issue 12): the simulator's detector and the campaign-derived pmask."""
import numpy as np

from calibration.bitmask import PMASK, PMASK_FATAL
from calibration.products import load_products
from mipssim.detector import DEAD_READOUT_70, default_detector


def test_the_dead_readout_collects_nothing_and_changes_no_other_pixel():
    on, off = default_detector(70), default_detector(70, dead_readout=False)
    assert np.all(on.responds[DEAD_READOUT_70] == 0) and np.all(off.responds[DEAD_READOUT_70] == 1)
    assert np.all(on.pmask[DEAD_READOUT_70] & PMASK["BAD_PIXEL"])
    outside = np.ones(on.pmask.shape, bool)
    outside[DEAD_READOUT_70] = False
    assert np.array_equal(on.pmask[outside], off.pmask[outside])
    for name in ("flat", "stim_pattern", "dark_mips", "read_noise", "excess_noise", "enl_beta"):
        assert np.array_equal(getattr(on, name), getattr(off, name)), name
    assert np.all(default_detector(160).pmask == default_detector(160, dead_readout=False).pmask)


def test_the_shipped_pmask_finds_the_dead_readout_from_the_campaign():
    pmask = load_products(70).pmask
    assert np.all(pmask[DEAD_READOUT_70] & PMASK_FATAL)
    # and no more than a handful of live side-A pixels besides
    side_a = np.zeros(pmask.shape, bool)
    side_a[:, :16] = True
    side_a[DEAD_READOUT_70] = False
    assert np.count_nonzero(pmask[side_a] & PMASK_FATAL) <= 4
