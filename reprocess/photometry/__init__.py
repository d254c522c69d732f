"""Point-source photometry on mosaics and BCD stacks: detection, apertures, PRF fitting (on a mosaic and
jointly over the BCDs that saw a source) and emcee posteriors, with the calibration chain of
``calibration.photometric`` (pixel areas, aperture and colour corrections, Vega magnitudes).

On a mosaic (``mips photometry``):

* :mod:`.mosaic_prf` -- what a point source looks like on a ``reprocess.mosaic`` mosaic (the PSF
  convolved with the native pixel and the coadd's inverse-variance-weighted bilinear kernel) and
  the noise correlation that resampling leaves;
* :mod:`.detect` -- matched-filter detection with the UNC map as the noise;
* :mod:`.prf_fit` -- PRF fitting of all sources in one sparse least-squares problem per
  Gauss-Newton iteration, blends in groups, errors with the noise correlation;
* :mod:`.aperture` -- photutils apertures and annuli, corrected and in uJy, flagged;
* :mod:`.catalog` -- reading mosaics, the whole measurement and ECSV/VOTable catalogues;
* :mod:`.flags` -- the ``flags`` bits.
"""
from .aperture import aperture_photometry_uJy, measure_apertures
from .catalog import (
           MosaicImage,
           measure,
           photometry_catalog,
           read_mosaic,
           write_catalog,
)
from .detect import detect_sources
from .flags import PhotFlag
from .mosaic_prf import MosaicPRF, mosaic_prf
from .prf_fit import fit_prf

__all__ = ["MosaicImage", "MosaicPRF", "PhotFlag", "aperture_photometry_uJy", "detect_sources",
           "fit_prf", "measure", "measure_apertures", "mosaic_prf", "photometry_catalog",
           "read_mosaic", "write_catalog"]
