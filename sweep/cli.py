"""Command line: ``sweep run | status | specs | bench | report``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _cmd_specs(args) -> int:
    from .spec import builtin_specs, parse_spec  # noqa: PLC0415

    for name, text in builtin_specs().items():
        spec = parse_spec(text, name)
        dims = " × ".join(f"{d}[{len(v)}]" for d, v in spec.grid.items())
        print(f"{name:28s} {spec.n_points:5d} points  {dims}\n{'':28s} {spec.description}")
    return 0


def _cmd_run(args) -> int:
    from .cluster import connect_from_args  # noqa: PLC0415
    from .cluster import PointTooLong, preflight  # noqa: PLC0415
    from .lock import StoreLockError, store_lock  # noqa: PLC0415
    from .runner import run_sweep  # noqa: PLC0415
    from .spec import SpecError, load_spec  # noqa: PLC0415
    from .store import (StoreMismatch, open_existing,  # noqa: PLC0415
                        recover_interrupted_extension)

    try:
        spec = load_spec(args.spec)
    except SpecError as e:
        print(f"sweep: invalid spec: {e}", file=sys.stderr)
        return 2
    try:
        # what cannot fit a worker is refused before any store or cluster exists
        preflight(spec)
    except SpecError as e:
        print(f"sweep: invalid spec: {e}", file=sys.stderr)
        return 2
    except PointTooLong as e:
        print(f"sweep: {e}", file=sys.stderr)
        return 2
    store = Path(args.store or f"runs/{spec.name}.zarr")
    store.parent.mkdir(parents=True, exist_ok=True)
    print(f"sweep {spec.name}: {spec.n_points} points -> {store}")
    try:
        # refuse a second writer, another spec's store or a damaged one before any cluster starts
        with store_lock(store):
            recover_interrupted_extension(store)
            if store.exists():
                open_existing(store, spec)
    except (StoreLockError, StoreMismatch) as e:
        print(f"sweep: {e}", file=sys.stderr)
        return 2
    with connect_from_args(args) as client:
        print(f"dashboard: {client.dashboard_link}")
        try:
            summary = run_sweep(spec, store, client, retry_failed=args.retry_failed,
                                max_points=args.max_points, progress=not args.no_progress,
                                cache=False if args.no_cache else None)
        except (StoreMismatch, StoreLockError, PointTooLong) as e:
            print(f"sweep: {e}", file=sys.stderr)
            return 2
    print(f"done {summary.done}, failed {summary.failed}, already done {summary.skipped}, "
          f"not yet run {summary.remaining}; tasks {summary.stages}")
    if summary.cache_dir is not None:
        print(f"loaded from the cache {summary.cached} ({summary.cache_dir})")
    for labels, msg in summary.failures:
        print(f"  failed {labels}: {msg}")
    return 1 if summary.failed else 0


def _label(value):
    """A coordinate value as plain Python: numpy scalars by ``.item()``; string coordinates
    (numpy StringDType) already come out as ``str``."""
    return value.item() if hasattr(value, "item") else value


def _cmd_status(args) -> int:
    import numpy as np  # noqa: PLC0415

    from .store import (STATUS_VALUES, StoreMismatch, is_store,  # noqa: PLC0415
                        missing_chunks, open_store, point_status, unreadable_arrays)

    if not Path(args.store).exists():
        print(f"sweep: no store at {args.store}", file=sys.stderr)
        return 2
    if not is_store(args.store):
        print(f"sweep: {args.store} is not a sweep store (no Zarr group with a status array)",
              file=sys.stderr)
        return 2
    try:
        ds = open_store(args.store)
    except StoreMismatch as e:
        print(f"sweep: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    status = point_status(ds)
    print(f"{args.store}: {ds.attrs.get('spec_name')} ({status.size} points)")
    print("  " + ", ".join(f"{s} {int(np.sum(status == s))}" for s in STATUS_VALUES))
    for attr in ("run_started_at", "run_finished_at", "git_commit"):
        if ds.attrs.get(attr):
            print(f"  {attr}: {ds.attrs[attr]}")
    errors = np.array(np.asarray(ds["error"].values).tolist(), dtype=str)
    for idx in np.argwhere(status == "failed"):
        labels = {d: _label(ds[d].values[i]) for d, i in zip(ds["status"].dims, idx)}
        print(f"  failed {labels}: {(errors[tuple(idx)].splitlines() or [''])[0]}")
    _print_cache(args.store, ds.attrs.get("spec_fingerprint"))
    dims = ds["status"].dims
    unreadable = unreadable_arrays(args.store, [n for n in ds.data_vars
                                                if ds[n].dims == dims])
    lost = missing_chunks(args.store, ds)
    for name, why in unreadable.items():
        print(f"  damaged: the metadata of {name} cannot be read ({why})")
    for name, idxs in lost.items():
        first = {d: _label(ds[d].values[i]) for d, i in zip(dims, idxs[0])}
        whose = "point(s), whose status is lost" if name == "status" else "done point(s)"
        print(f"  damaged: {name} lacks the chunks of {len(idxs)} {whose}, e.g. {first}")
    if lost or unreadable:
        print(f"sweep: {args.store} is damaged: chunks or metadata of points are missing "
              f"({', '.join([*unreadable, *lost])}); move it aside or restore it from a backup",
              file=sys.stderr)
        return 2
    return 0


def _print_cache(store, fingerprint) -> None:
    from . import cache as ic  # noqa: PLC0415

    root = ic.cache_root(store)
    if not root.is_dir():
        print(f"  cache: none at {root}")
        return
    u = ic.usage(root, fingerprint=fingerprint)
    settings = ic.from_config(store, enabled=True)
    enabled = "" if ic.from_config(store) is not None else " (disabled by sweep.cache.enabled)"
    print(f"  cache: {root}{enabled}: {u['entries']} entries, {u['bytes'] / 1e6:.1f} MB "
          f"(cap sweep.cache.max_bytes = {settings.max_bytes / 1e6:.0f} MB)")
    by = ", ".join(f"{k} {v}" for k, v in sorted(u["current_by_stage"].items())) or "none"
    print(f"    usable by this store (its spec, this code and these packages): "
          f"{u['current_entries']} entries, {u['current_bytes'] / 1e6:.1f} MB ({by})")
    if u["tmp_files"]:
        print(f"    {u['tmp_files']} temporary file(s) of writers that are running or crashed")


def _cmd_bench(args) -> int:
    from .bench import main_bench  # noqa: PLC0415

    return main_bench(args.L, args.basis_sizes, args.n_train, args.n_test,
                      check_L=args.check_L, check_max_basis=args.check_max_basis,
                      force_rows_basis=args.force_rows_basis, relax_size=args.relax_size,
                      paper_scale=args.paper_scale, threads=args.threads,
                      check_rows_L=args.check_rows_L, skip_slices=args.skip_slices)


def _cmd_report(args) -> int:
    from .report import main_report  # noqa: PLC0415

    return main_report(args.store, args.out)


def build_parser() -> argparse.ArgumentParser:
    from .cluster import add_arguments as cluster_arguments  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="sweep", description="MLIP generalisation sweeps: grids of "
                                "(defect × n_defects × L × basis × weights × observations) "
                                "into a Zarr store")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or resume) a sweep")
    r.add_argument("spec", help="built-in spec name (see `sweep specs`) or a TOML file")
    r.add_argument("--store", help="Zarr store path (default runs/<spec name>.zarr)")
    cluster_arguments(r)
    r.add_argument("--retry-failed", action="store_true", help="recompute failed points too")
    r.add_argument("--max-points", type=int, help="stop after this many points (resume later)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--no-cache", action="store_true",
                   help="neither load nor persist shared stages in the intermediate cache "
                        "<store>.cache (see docs/cache.md)")
    r.set_defaults(func=_cmd_run)
    s = sub.add_parser("status", help="counts by status and the failures of a store, and its "
                       "intermediate cache")
    s.add_argument("store")
    s.set_defaults(func=_cmd_status)
    sp = sub.add_parser("specs", help="list the built-in specs")
    sp.set_defaults(func=_cmd_specs)
    b = sub.add_parser("bench", help="P1 Table 2 fit benchmark (two vacancies): fast path vs "
                       "straightforward path and vs the paper, force rows, relaxation")
    b.add_argument("--L", type=int, nargs="+", default=[4, 6])
    b.add_argument("--basis-sizes", type=int, nargs="+", default=None,
                   help="default: P1 Table 2's sizes for each L")
    b.add_argument("--n-train", type=int, default=200)
    b.add_argument("--n-test", type=int, default=50)
    b.add_argument("--check-L", type=int, nargs="+", default=[4],
                   help="slices also fitted on the straightforward path (pyace rows)")
    b.add_argument("--check-max-basis", type=int, default=383,
                   help="largest basis fitted on the straightforward path")
    b.add_argument("--check-rows-L", type=int, nargs="+", default=[],
                   help="slices whose every fit is also checked on the straightforward path "
                        "with chain-rule rows (rows equal to pyace's, section 1)")
    b.add_argument("--threads", type=int, default=2,
                   help="threads of the fast paths (force rows, fits alone); BLAS stays on 1")
    b.add_argument("--skip-slices", action="store_true",
                   help="leave out the whole-slice section (3)")
    b.add_argument("--force-rows-basis", type=int, default=2000)
    b.add_argument("--relax-size", type=int, default=20,
                   help="N of the N x N relaxation cell (two vacancies); 0: no relaxation")
    b.add_argument("--paper-scale", action="store_true",
                   help="every L of P1 Table 2, straightforward check up to 1119 functions, "
                        "relaxation on the spec's 60 x 60 cell (hours under load)")
    b.set_defaults(func=_cmd_bench)
    rep = sub.add_parser("report", help="figures and slope tables from a store")
    rep.add_argument("store")
    rep.add_argument("--out", help="output directory (default <store>-report)")
    rep.set_defaults(func=_cmd_report)
    return p


def main(argv=None) -> int:
    """Run one command; an unreadable or invalid input is one line on stderr and exit 2."""
    from .spec import SpecError  # noqa: PLC0415
    from .store import StoreMismatch  # noqa: PLC0415

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as e:
        print(f"sweep: invalid spec: {e}", file=sys.stderr)
    except StoreMismatch as e:
        print(f"sweep: {str(e).splitlines()[0]}", file=sys.stderr)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
            UnicodeDecodeError) as e:
        print(f"sweep: cannot read the input: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
