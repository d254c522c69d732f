"""Print calibration.photometric's corrections beside the Handbook's (issue 15 figures; by hand).

    python benchmarks/photometric_tables.py
"""
from calibration.photometric import (
    BANDS,
    CALIBRATION_APERTURES,
    aperture_correction,
    colour_correction,
)

HB_K = {24: (1.000, 0.999, 0.992, 0.983, 0.970, 0.957, 0.948, 0.947, 0.986, 1.119, 2.031, 7.005),
        70: (1.000, 0.999, 0.995, 0.989, 0.980, 0.970, 0.959, 0.938, 0.914, 0.893, 0.901, 1.052)}
TEMPS = (1e4, 5e3, 1e3, 500, 300, 200, 150, 100, 70, 50, 30, 20)
HB_413 = {3.5: (2.78, 2.80, 2.57, 2.56, 2.56), 7.0: (None, 2.05, 1.61, 1.61, 1.61),
          13.0: (None, None, 1.17, 1.16, 1.16), 20.0: (None, None, 1.15, 1.13, 1.12)}
ANNULI = ((6, 8), (7, 13), (20, 32), (40, 50), None)


def main() -> None:
    print("Colour corrections K (ours | HB Table 4.16 where known)")
    print(f"{'source':>10} {'K24':>14} {'K70':>14} {'K160':>8}")
    for i, t in enumerate(TEMPS):
        k = [colour_correction(b, temperature=t) for b in BANDS]
        print(f"{t:>8.0f} K {k[0]:7.3f}|{HB_K[24][i]:<6.3f} {k[1]:7.3f}|{HB_K[70][i]:<6.3f} {k[2]:8.3f}")
    for a in (3, 2, 1, 0, -1, -2, -3):
        k = [colour_correction(b, alpha=a) for b in BANDS]
        print(f"{'nu^' + str(a):>10} {k[0]:7.3f}{'':7} {k[1]:7.3f}{'':7} {k[2]:8.3f}")
    print("\n24 um aperture corrections, 10^4 K: model | simulator (GOODS-S) | HB Table 4.13")
    for r, row in HB_413.items():
        cells = []
        for annulus, hb in zip(ANNULI, row):
            if hb is None:
                cells.append(f"{'n/a':^24}")
                continue
            model = aperture_correction(24, r, annulus_arcsec=annulus, temperature=1e4)
            try:
                sim = f"{aperture_correction(24, r, annulus_arcsec=annulus, psf='simulator'):.3f}"
            except ValueError:
                sim = "  -  "
            cells.append(f"{model:.3f}|{sim}|{hb:.2f} {100 * (model / hb - 1):+5.1f}%")
        print(f"r={r:4.1f} " + " ".join(cells))
    print("(annuli: 6-8, 7-13, 20-32, 40-50, none)")
    print("\nCalibration apertures (SSC apercorr page)")
    for band, (r, annulus, published) in CALIBRATION_APERTURES.items():
        ours = aperture_correction(band, r, annulus_arcsec=annulus)
        print(f"{band:>4} um r={r}\" sky {annulus}: {ours:.3f} vs {published} ({100 * (ours / published - 1):+.1f}%)")


if __name__ == "__main__":
    main()
