"""The ``mips`` command: simulate, reprocess, validate, mosaic, photometry, demo.

This front door is the only code that uses both the simulator and the
reprocessor.  Errors on bad input are one line on stderr with a non-zero exit
status; nothing is overwritten without ``--overwrite``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

__all__ = ["main", "Progress"]

log = logging.getLogger("mips")


class Progress:
    """A progress bar with an ETA on a terminal (log lines clear it first), log lines otherwise."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = -1
        self._t0 = time.monotonic()
        self._drawn = False
        if self.tty:
            for handler in logging.getLogger().handlers:
                handler.addFilter(self._clear_bar)

    def _clear_bar(self, record) -> bool:
        """Logging filter: erase a drawn bar before a log line (the next update redraws it)."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False
        return True

    def __call__(self, done: int, total: int) -> None:
        pct = int(100 * done / max(total, 1))
        if self.tty:
            bar = "#" * (pct // 4)
            self.stream.write(f"\r{self.label:<11} [{bar:<25}] {pct:3d}% ({done}/{total}) "
                              f"{self.eta(done, total)}")
            self._drawn = done < total
            if done >= total:
                self.stream.write(f"  {time.monotonic() - self._t0:.1f} s\n")
            self.stream.flush()
        elif pct // 25 != self._last // 25 or done >= total:
            log.info("%s: %d/%d (%d%%) %s", self.label, done, total, pct, self.eta(done, total))
        self._last = pct

    def eta(self, done: int, total: int) -> str:
        """Time left at the mean rate so far (blank until something is done, or when finished)."""
        if done <= 0 or done >= total:
            return " " * 10
        left = (time.monotonic() - self._t0) * (total - done) / done
        return f"ETA {int(left // 60):2d}m{int(left % 60):02d}s"


def _band(value: str):
    """``--band``: 24, 70, 160 or ``all``."""
    if value == "all":
        return value
    if value in ("24", "70", "160"):
        return int(value)
    raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from 24, 70, 160, all)")


def _cmd_simulate(args) -> int:
    from mipssim.config import load_config
    from mipssim.observe import simulate
    overrides = {"band": args.band, "mode": args.mode, "seed": args.seed, "n_dce": args.n_dce,
                 "scan_rate": args.rate}
    if args.no_stim_flash:
        overrides["include_stim"] = False
    if args.band == "all":
        return _simulate_all(args, overrides)
    cfg = load_config(args.config, **overrides)
    if cfg.mode != "scan" and args.rate is not None:
        raise ValueError("option --rate: only for --mode scan")
    simulate(cfg, args.out, overwrite=args.overwrite, progress=Progress("simulate"),
             workers=args.workers, chunk_dces=args.chunk_dces)
    if cfg.mode == "scan":
        from mipssim.scan import dces_per_leg
        what = (f"scan map, {cfg.scan_legs} legs x {dces_per_leg(cfg)} DCEs, {cfg.scan_rate} rate "
                f"{cfg.scan_rate_arcsec_s:g}\"/s")
    else:
        what = f"{cfg.n_dce} DCEs"
    print(f"simulated band {cfg.band} ({what}, seed {cfg.seed}) into {args.out}")
    return 0


def _simulate_all(args, overrides: dict) -> int:
    """``mips simulate --band all``: the three arrays of one AOR into one folder."""
    from mipssim.config import aor_configs
    from mipssim.observe import simulate_aor
    cfgs = aor_configs(args.config, **{k: v for k, v in overrides.items() if k != "band"})
    if cfgs[0].mode != "scan" and args.rate is not None:
        raise ValueError("option --rate: only for --mode scan")
    simulate_aor(cfgs, args.out, overwrite=args.overwrite, progress=Progress("simulate"),
                 workers=args.workers, chunk_dces=args.chunk_dces)
    raw = Path(args.out) / "raw"
    counts = ", ".join(f"{c.band} um: {len(list(raw.glob(f'SPITZER_M{ch}_*_raw.fits')))} DCEs"
                       for ch, c in enumerate(cfgs, start=1))
    print(f"simulated the three arrays of one {cfgs[0].mode} AOR ({counts}; seed {cfgs[0].seed}, "
          f"one sky drawn at {cfgs[0].scene_band} um) into {args.out}")
    return 0


def _cmd_reprocess(args) -> int:
    from reprocess.batch import reprocess_many
    if args.scheduler not in (None, "local") and args.workers is not None:
        raise ValueError(f"option --workers: the scheduler at {args.scheduler} has its own workers")
    options = {"jump_threshold": args.jump_threshold, "stim_mode": args.stim,
               "products": args.products, "off": tuple(args.off.split(",")) if args.off else None,
               "keep_first_frame": args.keep_first_frame or None, "leak_catalog": args.leak_catalog}
    results = reprocess_many(args.dirs, scheduler=args.scheduler, workers=args.workers or 1,
                             config_file=args.config, band=args.band,
                             keep_going=args.keep_going, overwrite=args.overwrite,
                             progress=Progress("reprocess"),
                             **{k: v for k, v in options.items() if v is not None})
    status = 0
    for obs, rep in zip(args.dirs, results):
        if isinstance(rep, Exception):
            print(f"mips reprocess: {rep}", file=sys.stderr)
            status = 1
            continue
        if rep.skipped:
            print(f"{obs}: complete, {rep.n_bcd} BCDs in {rep.out_dir} (inputs, configuration, "
                  f"calibration and software unchanged: skipped)")
        else:
            print(f"{obs}: {rep.n_bcd} BCDs written to {rep.out_dir}"
                  + (f" ({rep.n_stim} stim DCEs used for calibration)" if rep.n_stim else ""))
        if rep.failures:
            status = 1
            print(f"{len(rep.failures)} file(s) failed:", file=sys.stderr)
            for path, problem in rep.failures:
                print(f"  {path}: {problem}", file=sys.stderr)
    return status


def _cmd_validate(args) -> int:
    from mips.validate import (format_report, plot_paths, plot_validation, truth_bands, validate,
                               write_json)
    effects_path = Path(args.dir) / "effects.ecsv"
    bands = truth_bands(args.dir)
    plot = Path(args.plot) if args.plot else Path(args.dir) / "validation.png"
    if bands is not None:
        if args.effects or args.droop_reference:
            raise ValueError(f"{args.dir}: --effects and --droop-reference score one array; this "
                             f"folder holds {len(bands)}")
        plots = plot_paths({"channels": {str(b): None for b in bands}}, plot)
    else:
        plots = [plot]
    _refuse_to_overwrite(args.overwrite, args.json or Path(args.dir) / "validation.json", *plots,
                         *([effects_path] if args.effects else []))
    res = validate(args.dir)
    if args.droop_reference:
        from mips.validate_si import add_droop_reference
        add_droop_reference(res, args.droop_reference)
    print(format_report(res))
    if args.effects:
        from mips.effects import effect_table, format_table
        table = effect_table(args.dir)
        print("\n".join(format_table(table)))
        tmp = effects_path.with_name(effects_path.name + ".tmp")
        table.write(tmp, format="ascii.ecsv", overwrite=True)
        os.replace(tmp, effects_path)
    json_path = Path(args.json) if args.json else Path(args.dir) / "validation.json"
    write_json(res, json_path)
    plot_validation(res, plot)
    print(f"wrote {json_path} and {', '.join(map(str, plot_paths(res, plot)))}")
    return 0 if res["goals_met"] else 1     # errors (identity, missing files) exit 2 via main()


def _cmd_calibrate(args) -> int:
    from mips.calibrate import format_pulls, run_calibrate
    summary = run_calibrate(args.band, args.out, seed=args.seed, config_file=args.config,
                            n_dark=args.n_dark, n_flat=args.n_flat, overwrite=args.overwrite,
                            progress=Progress("campaign"))
    print(format_pulls(summary))
    return 0


def _print_pointing(hdul) -> None:
    import numpy as np
    ptg = hdul["POINTING"].data
    fitted = sum(str(s) in ("relative", "absolute") for s in ptg["status"])
    shift = np.hypot(ptg["d_east_arcsec"], ptg["d_north_arcsec"])
    print(f"pointing refinement ({hdul[0].header['PTGREF']}): {fitted} of {len(ptg)} BCDs corrected, "
          f"median shift {np.median(shift) if len(shift) else 0:.2f}\" (the mosaic's POINTING table)")


def _cmd_mosaic(args) -> int:
    from reprocess.mosaic import check_rmask_targets, make_mosaic, rmask_writer, write_mosaic
    out = Path(args.out)
    _refuse_to_overwrite(args.overwrite, out)
    paths = _bcd_paths(args.inputs)
    reject_sigma = None if args.no_reject else args.reject_sigma
    if args.rmask and reject_sigma is None:
        raise ValueError("--rmask writes the rejected pixels: it needs outlier rejection (no --no-reject)")
    writer = None
    if args.rmask:
        check_rmask_targets(paths, overwrite=args.overwrite)
        writer = rmask_writer(overwrite=args.overwrite)
    if args.catalog and not args.refine_pointing:
        raise ValueError("--catalog is the reference of --refine-pointing: give both")
    catalog = None
    if args.catalog:
        from reprocess.mosaic import read_catalog
        catalog = read_catalog(args.catalog)
    hdul = make_mosaic(paths, band=args.band, pixel_arcsec=args.pixel,
                       match_background=not args.no_match_background,
                       reject_sigma=reject_sigma, radhit=args.radhit,
                       keep_going=args.keep_going, on_rmask=writer,
                       refine_pointing=args.refine_pointing, catalog=catalog,
                       pointing_fitgeom=args.pointing_fit)
    write_mosaic(hdul, out, overwrite=args.overwrite)
    if "POINTING" in hdul:
        _print_pointing(hdul)
    print(f"mosaic of {hdul[0].header.get('NINPUT', len(paths))} BCDs -> {out}"
          + (f" ({hdul[0].header['NSKIPPED']} left out, listed in its header)"
             if hdul[0].header.get("NSKIPPED") else ""))
    return 0


def _cmd_filter(args) -> int:
    from reprocess.filtering import filter_observation
    report = filter_observation(args.dir, overwrite=args.overwrite, window_dces=args.window,
                                column=not args.no_column,
                                n_sigma=None if args.single_pass else args.n_sigma)
    print(f"{args.dir}: {len(report.written)} filtered BCDs (*_fbcd.fits) written")
    return 0


def _cmd_flatfield(args) -> int:
    from reprocess.selfcal import flatfield_observation
    report = flatfield_observation(args.dir, args.out, grouping=args.group, overwrite=args.overwrite)
    print(f"{args.out}/bcd: {len(report.written)} BCDs divided by {len(report.flats)} extra flat(s) "
          f"(grouped by {args.group}; {100 * report.masked_fraction:.1f} % of values masked as sources)")
    return 0


def _cmd_photometry(args) -> int:
    from reprocess.photometry.catalog import photometry_catalog, write_catalog
    out = Path(args.out)
    _refuse_to_overwrite(args.overwrite, out, *([out.with_suffix(".vot")] if args.votable else []))
    colour = ({"temperature": args.colour_temperature} if args.colour_temperature is not None
              else {"alpha": args.colour_alpha} if args.colour_alpha is not None else None)
    table = photometry_catalog(args.inputs, method=args.method, band=args.band, nsigma=args.nsigma,
                               temperature_k=args.temperature, psf=args.psf, colour=colour)
    paths = write_catalog(table, out, votable=args.votable, overwrite=args.overwrite)
    print(f"{len(table)} sources ({args.method}) -> {', '.join(map(str, paths))}")
    return 0


def _bcd_paths(inputs) -> list[Path]:
    """``*_bcd.fits`` files given directly or found in observation folders (``DIR/bcd``) or folders."""
    from calibration.folders import expand_inputs

    def find(item: Path) -> list[Path]:
        return sorted((item / "bcd" if (item / "bcd").is_dir() else item).glob("*_bcd.fits"))
    return expand_inputs(inputs, find, none_found="no *_bcd.fits in it (reprocess it first)")


def _refuse_to_overwrite(overwrite: bool, *paths) -> None:
    """FileExistsError naming the first of ``paths`` that exists, unless ``overwrite``."""
    for path in map(Path, paths):
        if not overwrite and (path.exists() or path.is_symlink()):
            raise FileExistsError(f"{path}: exists (use --overwrite to replace it)")


def _cmd_demo(args) -> int:
    from mips.demo import run_demo
    return run_demo(args.out, band=args.band, seed=args.seed, n_dce=args.n_dce, mode=args.mode,
                    overwrite=args.overwrite)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mips", description=(
        "Spitzer MIPS toolkit: simulate raw data with known truth, reprocess raw DCEs into BCDs, "
        "and validate the BCDs against the truth."))
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="simulate one observation (raw DCEs + truth.h5)")
    s.add_argument("--band", type=_band, default=None, metavar="{24,70,160,all}",
                   help="array (default 70); all: the three arrays of one AOR, one sky, in one folder")
    s.add_argument("--mode", choices=("photometry", "scan"), default=None,
                   help="observing mode (default photometry); scan: a scan map, its legs set by "
                        "the scan_* parameters (default the IOC-295 map: 16 legs of 30')")
    s.add_argument("--rate", choices=("slow", "medium", "fast"), default=None,
                   help="scan map: telescope scan rate (default medium)")
    s.add_argument("--seed", type=int, default=None, help="random seed (default 1)")
    s.add_argument("--n-dce", type=int, default=None,
                   help="number of DCEs (default 240; ignored in scan mode: the legs set it)")
    s.add_argument("--no-stim-flash", action="store_true", help="switch the stim flash off")
    s.add_argument("--config", help="TOML file of simulator parameters (see mipssim/config.py)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--overwrite", action="store_true",
                   help="replace an existing observation (raw/, truth.h5; its bcd/ is removed)")
    s.add_argument("--workers", type=int, default=1,
                   help="processes simulating chunks of DCEs in parallel (the files do not depend on it)")
    s.add_argument("--chunk-dces", type=int, default=None,
                   help="DCEs per chunk (default 64; the files do not depend on it)")
    s.set_defaults(func=_cmd_simulate)

    r = sub.add_parser("reprocess", help="turn DIR/raw into DIR/bcd (BCD, _bunc, _bmask)")
    r.add_argument("dirs", nargs="+", metavar="DIR", help="observation folder(s)")
    r.add_argument("--band", type=_band, default=None, metavar="{24,70,160,all}",
                   help="a folder holding several arrays' raw files (mips simulate --band all): "
                        "reprocess all of them into one bcd/, or only this one (default: the "
                        "folder's one array; a folder of several is refused)")
    r.add_argument("--keep-going", action="store_true",
                   help="skip bad files (and folders), list the failures at the end")
    r.add_argument("--overwrite", action="store_true",
                   help="replace stale products (made from other raw files, configuration, calibration "
                        "or software); complete and valid ones are always skipped")
    r.add_argument("--workers", type=int, default=None,
                   help="local worker processes, folders reprocessed in parallel on a dask LocalCluster "
                        "(default 1: one after another in this process; results do not depend on it)")
    r.add_argument("--scheduler", metavar="ADDRESS|local", default=None,
                   help="run on the dask.distributed scheduler at ADDRESS (e.g. tcp://host:8786; its "
                        "workers must see the same folders) instead of this machine (local, default)")
    r.add_argument("--stim", choices=("interp", "constant"), default=None,
                   help="responsivity: interpolate stim flashes in time (default) or hold constant")
    r.add_argument("--jump-threshold", type=float, default=None,
                   help="jump threshold in sigma of one read difference (default 4.5)")
    r.add_argument("--products", help="calibration product set (FITS) instead of the shipped one")
    r.add_argument("--config", help="TOML file of reprocessing parameters (see ReprocessConfig in "
                                    "reprocess/ge_pipeline.py, SiConfig in reprocess/si_pipeline.py)")
    r.add_argument("--off", help="24 um: comma-separated corrections to skip "
                                 "(read2,saturation,droop,row_droop,dark,first_frame,flat)")
    r.add_argument("--leak-catalog", metavar="FILE",
                   help="160 um: ECSV of hot sources (ra, dec in deg, flux_nir_jy: ~1.4 um flux "
                        "density, Jy); pixels near those whose predicted near-IR leak ghost is "
                        ">= leak_min_jy get the LEAK bit")
    r.add_argument("--keep-first-frame", action="store_true",
                   help="24 um: also calibrate DCENUM 0 (dropped by default)")
    r.set_defaults(func=_cmd_reprocess)

    v = sub.add_parser("validate", help="score DIR/bcd against DIR/truth.h5")
    v.add_argument("dir", metavar="DIR")
    v.add_argument("--json", help="write the figures here (default DIR/validation.json)")
    v.add_argument("--plot", help="write the plot here (default DIR/validation.png)")
    v.add_argument("--droop-reference", metavar="REF_DIR",
                   help="24 um: the same observation (same seed) without the bright source; reports "
                        "the droop offset the source causes, correction on and off")
    v.add_argument("--effects", action="store_true",
                   help="70/160 um: also simulate and reprocess the observation again with each "
                        "detector effect, then each correction, off in turn, and print (and write "
                        "DIR/effects.ecsv) the table of what each costs or buys (slow)")
    v.add_argument("--overwrite", action="store_true",
                   help="replace existing --json / --plot files (default: refuse)")
    v.set_defaults(func=_cmd_validate)

    c = sub.add_parser("calibrate", help="simulate a calibration campaign and derive a product "
                                         "set from its raw data")
    c.add_argument("--band", type=int, choices=(24, 70, 160), required=True)
    c.add_argument("--seed", type=int, default=1, help="random seed of the campaign (default 1)")
    c.add_argument("--config", help="TOML file of simulator parameters for the campaign's AORs")
    c.add_argument("--n-dark", type=int, default=120,
                   help="70/160 um: DCEs of the dark AOR, stim flashes included (default 120)")
    c.add_argument("--n-flat", type=int, default=240,
                   help="70/160 um: DCEs of the sky-flat AOR, stim flashes included (default 240)")
    c.add_argument("--out", required=True, help="output folder (products, chains, campaign data)")
    c.add_argument("--overwrite", action="store_true", help="replace an earlier campaign in --out")
    c.set_defaults(func=_cmd_calibrate)

    m = sub.add_parser("mosaic", help="mosaic BCDs onto one TAN grid (MJy/sr, with UNC and COV)")
    m.add_argument("inputs", nargs="+", metavar="DIR|BCD",
                   help="observation folders (their bcd/), folders of BCDs or *_bcd.fits files")
    m.add_argument("--band", type=int, choices=(24, 70, 160), default=None,
                   help="band to mosaic (default: that of most BCDs)")
    m.add_argument("--out", required=True, help="output FITS file")
    m.add_argument("--pixel", type=float, default=None,
                   help='output pixel, arcsec (default 2.45", 4", 8" at 24, 70, 160 um)')
    m.add_argument("--no-match-background", action="store_true",
                   help="do not fit one additive offset per BCD from the overlaps")
    m.add_argument("--reject-sigma", type=float, default=5.0, help="outlier threshold (default 5)")
    m.add_argument("--no-reject", action="store_true", help="no outlier rejection")
    m.add_argument("--radhit", action="store_true",
                   help="also reject single-frame radiation hits where only one BCD covers the sky")
    m.add_argument("--rmask", action="store_true",
                   help="write each BCD's rejected pixels to <stem>_brmsk.fits beside it "
                        "(RMask bits; the BCD itself is never changed)")
    m.add_argument("--refine-pointing", action="store_true",
                   help="refine each BCD's pointing against the sources the BCDs share (in memory; "
                        "the BCDs are not changed; record in the POINTING extension)")
    m.add_argument("--catalog", metavar="FILE", default=None,
                   help="with --refine-pointing: reference catalogue (a table with RA, Dec in deg) "
                        "for absolute refinement after the relative one")
    m.add_argument("--pointing-fit", choices=("shift", "rshift"), default="shift",
                   help="per-BCD pointing correction: shift, or shift and rotation (default shift)")
    m.add_argument("--keep-going", action="store_true",
                   help="leave out (and list) BCDs that cannot be used instead of stopping")
    m.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    m.set_defaults(func=_cmd_mosaic)

    f = sub.add_parser("filter", help="70/160 um: high-pass filtered BCDs (*_fbcd.fits) beside DIR/bcd's")
    f.add_argument("dir", metavar="DIR")
    f.add_argument("--window", type=int, default=15, help="DCEs in the running time median (default 15)")
    f.add_argument("--no-column", action="store_true", help="no column-median filter")
    f.add_argument("--n-sigma", type=float, default=3.0,
                   help="second pass: mask what the first found above this (default 3)")
    f.add_argument("--single-pass", action="store_true", help="no second pass (no source masking)")
    f.add_argument("--overwrite", action="store_true", help="replace existing *_fbcd.fits")
    f.set_defaults(func=_cmd_filter)

    x = sub.add_parser("flatfield", help="extra flat field from the BCD stack (sources masked); "
                                         "writes OUT/bcd")
    x.add_argument("dir", metavar="DIR", help="observation folder (its bcd/ is read, never modified)")
    x.add_argument("--out", required=True, help="output observation folder (OUT/bcd is written)")
    x.add_argument("--group", choices=("none", "csm", "leg", "csm+leg"), default="csm",
                   help="one flat per scan-mirror position (default), scan leg, both, or one in all")
    x.add_argument("--overwrite", action="store_true", help="replace an existing OUT/bcd")
    x.set_defaults(func=_cmd_flatfield)

    ph = sub.add_parser("photometry", help="point-source catalogue of mosaics (ECSV: uJy, deg)")
    ph.add_argument("inputs", nargs="+", metavar="FILE.fits|DIR",
                    help="mosaics (mips mosaic), or folders holding mosaic.fits (else their *.fits)")
    ph.add_argument("--out", required=True, help="output catalogue (ECSV)")
    ph.add_argument("--votable", action="store_true", help="also write a VOTable (same name, .vot)")
    ph.add_argument("--method", choices=("prf", "aperture"), default="prf",
                    help="PRF fitting (default) or aperture photometry")
    ph.add_argument("--band", type=int, choices=(24, 70, 160), default=None,
                    help="default: the mosaic's BAND card")
    ph.add_argument("--nsigma", type=float, default=5.0, help="detection threshold (default 5)")
    ph.add_argument("--temperature", type=float, default=None,
                    help="source blackbody temperature, K: chooses the 70/160 um PSF and the "
                         "aperture correction (default: the flux calibrators')")
    ph.add_argument("--psf", choices=("model", "simulator"), default="model",
                    help="simulator: data made by mips simulate (its PSFs); model: real data")
    ph.add_argument("--colour-temperature", type=float, default=None,
                    help="add colour-corrected fluxes for a blackbody of this temperature, K")
    ph.add_argument("--colour-alpha", type=float, default=None,
                    help="add colour-corrected fluxes for F_nu ~ nu^alpha")
    ph.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    ph.set_defaults(func=_cmd_photometry)

    d = sub.add_parser("demo", help="simulate, reprocess and validate a default observation "
                                    "(70 um unless --band)")
    d.add_argument("--out", default="demo_out", help="working folder (default ./demo_out)")
    d.add_argument("--band", type=_band, default=70, metavar="{24,70,160,all}",
                   help="array (default 70); all: the three arrays of one AOR")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--n-dce", type=int, default=None, help="DCEs to simulate (default 240)")
    d.add_argument("--mode", choices=("photometry", "scan"), default="photometry",
                   help="scan: the default scan map, ending with its mosaic (DIR/mosaic.fits)")
    d.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, OSError, KeyError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"mips {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
