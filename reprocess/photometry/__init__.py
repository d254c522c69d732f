"""Point-source photometry on mosaics and BCD stacks: detection, apertures, PRF fitting (on a mosaic and
jointly over the BCDs that saw a source) and emcee posteriors, with the calibration chain of
``calibration.photometric`` (pixel areas, aperture and colour corrections, Vega magnitudes)."""
