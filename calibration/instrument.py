"""MIPS array geometry, timing and detector constants, each with its source.

Numbers come from ``shared/docs/mips-facts.md``; the tag after each value names
its source there.  Numbers that no seen source confirms are marked
UNCONFIRMED: they are configurable (the simulator's TOML configuration and the
calibration products can override them) and their default is explained here.

Timing
------
One "MIPS second" is 1.048576 s [HB 5.1.2 /56].  The Ge arrays (70, 160 um)
are read every 1/8 MIPS second = 0.131072 s [HB 2.4.3 /14]; a 3, 4 or 10 MIPS-s
DCE has 24, 32 or 80 reads [GeRT /4].  At 160 um a 10 MIPS-s DCE is split into
two 5 MIPS-s ramps by a mid-exposure reset [HB 2.4.3 /14]: 80 reads make two
ramps of 40 (:func:`ge_ramps_per_dce`).  Archive headers carry no keyword for
this, so the simulator and the reprocessor both take it from this rule.

Ge levels
---------
The Ge arrays' flux calibration fixes only the ratio of the stim to the sky
responsivity: ``FLUXCONV = stim_dn_s / dn_s_per_mjysr`` (MJy/sr per MIPS unit).
The archive's BCDs use 702 at 70 um and 44.7 at 160 um [mips-facts 5.1].  At
70 um the flight stim level is measured (10000 DN/s array average, "about as
intended" [IOC-247/248H]), so the sky responsivity is 10000 / 702 = 14.2 DN/s
per MJy/sr, 3.1x below the pre-launch 44.8 [CNT]; the Handbook's "saturation
levels at 70 microns are higher than expected pre-launch" [HB 4.1.4 /43]
agrees in direction.  At 160 um the flight stim at its nominal DAC read 2x its
expected level [IOC-248H]; we read that as the array's responsivity being 2x
the pre-launch 68 DN/s per MJy/sr (the stim is a calibrated lamp, the array is
what changed), so 136, and the stim then follows from FLUXCONV: 6079 DN/s.
The nominal DAC's 35000 DN/s would saturate a 5 MIPS-s ramp in under 2 s, so
flight photometry must have flashed at a lower setting: its level is
UNCONFIRMED.  Gain (7.1 e-/DN), dark and the 16-bit rail are the sources'.

Ge noise
--------
Flight darks show 18-36 DN/s of slope noise per 10 MIPS-s DCE at 70 um
(1340-2660 e- at 7.1 e-/DN [IOC-911]) and 35.6 +- 20.9 DN/s for two 5 MIPS-s
ramps at 160 um [IOC-912K], while the dark's own shot noise is ~1 DN/s and a
per-read noise of tens of DN gives a few DN/s.  The excess is modelled as
white noise in the photocurrent -- independent increments of the integrated
charge, density ``excess_noise_dn2_s`` -- which is what generation-
recombination noise and a stream of cosmic-ray hits too small to detect both
are.  (The sources give only the total per DCE, not its spectrum: a
correlated (1/f) excess is not modelled.)  Over a ramp of duration ``T`` it adds
``sqrt(D / T)`` to the slope noise: 6500 DN^2/s gives 25 DN/s at 70 um
(T = 79 x 0.131 s) and 13000 DN^2/s gives 35.7 DN/s for two 5 MIPS-s ramps at
160 um.  Independent increments keep GLS on the differences at the Cramer-Rao
bound, provided the fit's noise model includes the density
(:func:`reprocess.ramps.fit_ramps` ``excess_noise``).

Units
-----
Raw data are DN.  Slopes are DN/s.  The stim-calibrated Ge unit is "MIPS70" /
"MIPS160": a slope divided by the stim-minus-background slope of the same
pixel, which ``FLUXCONV`` (MJy/sr per MIPS unit) turns into surface brightness.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIPS_SECOND_S", "GE_READ_TIME_S", "SI_READ_TIME_S", "BandSpec", "BANDS",
           "band_spec", "ge_reads_per_dce", "si_reads_per_dce", "ge_ramps_per_dce",
           "ARCSEC2_PER_SR"]

MIPS_SECOND_S = 1.048576          # s per MIPS second [HB 5.1.2 /56, DERIVED]
GE_READ_TIME_S = MIPS_SECOND_S / 8  # 0.131072 s between Ge reads [HB 2.4.3 /14]
SI_READ_TIME_S = MIPS_SECOND_S / 2  # 0.524288 s between Si:As samples [HB 5.1.2 /56]
ARCSEC2_PER_SR = (180.0 / 3.141592653589793 * 3600.0) ** 2

# Ge reads per DCE by exposure time in MIPS seconds [GeRT /4]
_GE_READS = {3: 24, 4: 32, 10: 80}
# Si:As samples per DCE if sampling spans the DCE (DERIVED, count UNCONFIRMED) [mips-facts 2.2]
_SI_READS = {3: 6, 4: 8, 10: 20, 30: 60}


def si_reads_per_dce(exptime_mips_s: int) -> int:
    """Number of 24 um samples in a DCE of ``exptime_mips_s`` MIPS seconds (3, 4, 10 or 30)."""
    try:
        return _SI_READS[int(exptime_mips_s)]
    except KeyError:
        raise ValueError(f"24 um DCE exposure must be one of {sorted(_SI_READS)} MIPS s, "
                         f"got {exptime_mips_s!r}") from None


def ge_reads_per_dce(exptime_mips_s: int) -> int:
    """Number of Ge reads in a DCE of ``exptime_mips_s`` MIPS seconds (3, 4 or 10)."""
    try:
        return _GE_READS[int(exptime_mips_s)]
    except KeyError:
        raise ValueError(f"Ge DCE exposure must be one of {sorted(_GE_READS)} MIPS s, "
                         f"got {exptime_mips_s!r}") from None


def ge_ramps_per_dce(band: int, nreads: int) -> int:
    """Ramps (resets) in a Ge DCE of ``nreads`` reads: 2 for a 160 um 10 MIPS-s DCE, else 1.

    The 160 um array's mid-exposure reset splits a 10 MIPS-s DCE (80 reads) into
    two ramps of 40 [HB 2.4.3 /14; GeRT /4]; 3 and 4 MIPS-s DCEs and the 70 um
    array have one ramp.
    """
    return 2 if int(band) == 160 and int(nreads) == _GE_READS[10] else 1


@dataclass(frozen=True)
class BandSpec:
    """Constants of one MIPS array.

    Attributes
    ----------
    band : int
        Wavelength name in um (24, 70, 160).
    chnlnum : int
        SSC channel number (1, 2, 3) used in file names and CHNLNUM.
    shape : tuple of int
        (NY, NX) of the raw frames.
    pixel_arcsec : float
        Nominal pixel size, arcsec.
    read_time_s : float
        Time between reads, s.
    gain_e_per_dn : float
        Conversion gain, e-/DN.
    read_noise_dn : float
        Noise of one read, DN (UNCONFIRMED for all arrays, see module notes).
    saturation_dn : float
        Reads at or above this raw level are flagged saturated, DN.
    adc_max_dn : int
        A/D full scale, DN (16-bit).
    dn_s_per_mjysr : float
        Slope per unit surface brightness at nominal responsivity and flat = 1,
        DN/s per MJy/sr.
    stim_dn_s : float
        Array-median stim-flash slope at nominal responsivity, DN/s.
    dark_mips : float
        Array-median dark current in calibrated (stim) units.
    excess_noise_dn2_s : float
        Array-median density of the Ge arrays' excess current noise, DN^2/s: white
        noise in the photocurrent (independent increments of the integrated
        charge, a random walk), the part of the flight dark noise that read
        noise and shot noise do not explain (see "Ge noise" in the module notes).
    lambda_um : float
        Reference wavelength, um.
    """

    band: int
    chnlnum: int
    shape: tuple[int, int]
    pixel_arcsec: float
    read_time_s: float
    gain_e_per_dn: float
    read_noise_dn: float
    saturation_dn: float
    adc_max_dn: int
    dn_s_per_mjysr: float
    stim_dn_s: float
    dark_mips: float
    lambda_um: float
    excess_noise_dn2_s: float = 0.0

    @property
    def pixel_sr(self) -> float:
        """Solid angle of one nominal pixel, sr."""
        return self.pixel_arcsec ** 2 / ARCSEC2_PER_SR


BANDS: dict[int, BandSpec] = {
    24: BandSpec(
        band=24, chnlnum=1,
        shape=(128, 128),                # [Cookbook]
        pixel_arcsec=2.55,               # [Cookbook]
        read_time_s=SI_READ_TIME_S,
        gain_e_per_dn=5.0,               # 5.0 e-/DN [3rd-party HB Table 2.4]; pre-launch 5.1 [CNT]
        read_noise_dn=8.0,               # 40 e- [3rd-party HB Table 2.4] / 5 e-/DN
        saturation_dn=36000.0,           # full well above the reset level, DN; UNCONFIRMED, chosen so
                                         # that 36000/60 reads = 600 DN/sample, the on-board
                                         # difference threshold of a 30 MIPS-s DCE [HB 5.1.2 /56]
        adc_max_dn=65535,                # 16-bit assumed (UNCONFIRMED)
        dn_s_per_mjysr=1.0 / 0.0454,     # flight calibration 0.0454 MJy/sr per DN/s [E07]
        stim_dn_s=0.0,                   # (no stim tracking at 24 um)
        dark_mips=0.0,
        lambda_um=23.68,                 # [HB /51]
    ),
    70: BandSpec(
        band=70, chnlnum=2,
        shape=(32, 32),                  # right half (16 columns) dead [HB 6.5 /68]
        pixel_arcsec=9.98,               # wide field [Cookbook]
        read_time_s=GE_READ_TIME_S,
        gain_e_per_dn=7.1,               # [CNT]
        read_noise_dn=20.0,              # UNCONFIRMED: per-read noise; anchors.md 1.7 uses 2-20 DN.
                                         # IOC-911H1's "read noise 746 +- 337 e-" (105 DN) does not
                                         # say per read or per DCE; per read it would add only
                                         # 3.9 DN/s to a 10 MIPS-s slope (excess noise: 25 DN/s)
        saturation_dn=62500.0,           # mips_sloper high threshold [stimcal]
        adc_max_dn=65535,                # 16-bit A/D [DERIVED, mips-facts 2.2]
        dn_s_per_mjysr=10000.0 / 702.0,  # flight: stim / FLUXCONV (see "Ge levels"); pre-launch 44.8
        stim_dn_s=10000.0,               # in-flight ~1e4 DN/s array average [IOC-247/248H]
        dark_mips=7.0e-3,                # (5-10)e-3 MIPS70 [IOC-911P, 911H1]
        lambda_um=71.42,                 # [HB /51]
        excess_noise_dn2_s=6500.0,       # 25 DN/s per dark 10 MIPS-s DCE [IOC-911: 18-36 DN/s]
    ),
    160: BandSpec(
        band=160, chnlnum=3,
        shape=(3, 20),                   # 2x20 + blank middle row [HB 3.1.5 /25; mips_sloper 3x20]
        pixel_arcsec=16.0,               # [Cookbook, CNT]
        read_time_s=GE_READ_TIME_S,
        gain_e_per_dn=7.1,               # [CNT]
        read_noise_dn=20.0,              # UNCONFIRMED (as 70 um)
        saturation_dn=61000.0,           # mips_sloper high threshold [stimcal]
        adc_max_dn=65535,
        dn_s_per_mjysr=136.0,            # 2 x pre-launch 68.0 [CNT], as the stim read 2 x its
                                         # expected level in flight [IOC-248H] (see "Ge levels")
        stim_dn_s=136.0 * 44.7,          # = 6079 DN/s, FLUXCONV 44.7 [mips-facts 5.1]; the DAC level is
                                         # UNCONFIRMED (0x40's 35000 DN/s saturates a ramp in 1.7 s)
        dark_mips=2.6e-2,                # (2.58+-1.28)e-2 MIPS160 [IOC-912K]
        lambda_um=155.9,                 # [HB /51]
        excess_noise_dn2_s=13000.0,      # 35.6 DN/s per two 5 MIPS-s ramps [IOC-912K]
    ),
}


def band_spec(band: int) -> BandSpec:
    """Return the :class:`BandSpec` of ``band`` (24, 70 or 160)."""
    try:
        return BANDS[int(band)]
    except (KeyError, ValueError):
        raise ValueError(f"unsupported band {band!r}: expected one of {sorted(BANDS)}") from None
