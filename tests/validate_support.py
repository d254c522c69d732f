"""Helpers of the validation tests: a simulated 70 um observation reprocessed in several ways."""
from __future__ import annotations

import shutil
from pathlib import Path



def copy_observation(src: Path, dst: Path) -> Path:
    """A copy of an observation's raw/ and truth.h5 (no products) in ``dst``."""
    dst.mkdir(parents=True)
    shutil.copytree(src / "raw", dst / "raw")
    shutil.copy2(src / "truth.h5", dst / "truth.h5")
    return dst


def copy_reprocessed(src: Path, dst: Path) -> Path:
    """A copy of a reprocessed observation: raw/, truth.h5 and bcd/."""
    copy_observation(src, dst)
    shutil.copytree(src / "bcd", dst / "bcd")
    return dst


def reprocessed(src: Path, dst: Path, **options) -> Path:
    """``src`` copied to ``dst`` and reprocessed there with ``options``."""
    from reprocess.pipeline import reprocess
    copy_observation(src, dst)
    reprocess(dst, **options)
    return dst
