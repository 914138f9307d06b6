"""The ``gru-viewer`` command line: opens the viewer, or runs one headless job.

Heavy modules (Qt, torch, SimpleITK) are imported inside the command that needs them, so ``--help`` and
``--version`` answer at once and work without a display.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from viewer import __version__
from viewer.errors import CancelledError, ViewerError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOTHING = 3
EXIT_INTERRUPTED = 130

EPILOG = """\
commands run headless except 'gui'; 'gru-viewer PATH' is short for 'gru-viewer gui PATH'.

exit codes:
  0    success
  1    a file, series or job failed; the message says what and why
  2    wrong usage (unknown option, missing argument)
  3    nothing to do: no DICOM image found / nothing could be analysed
  130  interrupted (Ctrl+C) or cancelled
"""

log = logging.getLogger("viewer")


def _progress_printer(enabled: bool) -> Callable[[int, int, str], None] | None:
    if not enabled or not sys.stderr.isatty():
        return None

    def progress(done: int, total: int, text: str) -> None:
        width = 30
        filled = int(width * done / total) if total else 0
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {text[:40]:<40}")
        if total and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return progress


def cmd_index(args: argparse.Namespace) -> int:
    from viewer.dicom.index import format_index, index_to_dict, scan

    index = scan(args.paths, progress=_progress_printer(not args.quiet), use_cache=not args.no_cache)
    print(format_index(index))
    if args.json:
        Path(args.json).write_text(json.dumps(index_to_dict(index), indent=2))
    return EXIT_OK if index.patients else EXIT_NOTHING


def cmd_demo_data(args: argparse.Namespace) -> int:
    from viewer.dicom.phantom import write_phantom_dataset

    manifest = write_phantom_dataset(
        Path(args.out),
        studies=args.studies,
        seed=args.seed,
        matrix=args.matrix,
        progress=_progress_printer(True),
    )
    n = len(manifest.studies)
    print(f"wrote {n} phantom stud{'y' if n == 1 else 'ies'} to {args.out} (labels: {manifest.labels_path})")
    return EXIT_OK


def cmd_gui(args: argparse.Namespace) -> int:
    from viewer.ui.app import run_app

    return run_app(args.paths)


def cmd_bench(args: argparse.Namespace) -> int:
    from viewer.bench.runner import SUITES, format_table, run

    suites = args.suites or list(SUITES)
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ViewerError("Unknown benchmark suite", f"{', '.join(unknown)}; choose from {', '.join(SUITES)}")
    results = run(suites, args.quick, Path(args.json) if args.json else None)
    print(format_table(results))
    if args.json:
        print(f"results written to {args.json}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gru-viewer",
        description="GRU Viewer: a DICOM viewer for head CT with an interpretable slice-GRU classifier.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gru-viewer {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress details (never patient data)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("gui", help="open the viewer (default)")
    p.add_argument("paths", nargs="*", help="folder, DICOMDIR or files to open")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("index", help="list patients, studies and series in a folder, DICOMDIR or files")
    p.add_argument("paths", nargs="+", help="folder, DICOMDIR or files")
    p.add_argument("--json", metavar="FILE", help="also write the index as JSON")
    p.add_argument("--no-cache", action="store_true", help="ignore and do not update the persistent index")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("demo-data", help="write synthetic head-CT phantom studies as DICOM")
    p.add_argument("out", help="output folder (created)")
    p.add_argument("--studies", type=int, default=1, help="number of studies (default 1, a bleed case)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--matrix", type=int, default=512, help="image size in pixels (default 512)")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("bench", help="run benchmarks against baselines measured in the same run")
    p.add_argument("suites", nargs="*", help="index, load, gui, model (default: all)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument("--json", metavar="FILE", default="bench/results.json", help="write results as JSON")
    p.set_defaults(func=cmd_bench)

    return parser


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: Sequence[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # index workers are spawned processes on macOS/Windows and in bundles
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    first = next((a for a in argv if not a.startswith("-")), None)
    if not any(a in ("-h", "--help", "--version") for a in argv) and (
        first is None or first not in _commands(parser)
    ):
        argv = (
            [a for a in argv if a in ("-v", "--verbose")]
            + ["gui"]
            + [a for a in argv if a not in ("-v", "--verbose")]
        )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args))
    except CancelledError as err:
        print(f"gru-viewer: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ViewerError as err:
        print(f"gru-viewer: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("gru-viewer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into a reader that stopped early (`gru-viewer index DIR | head`): not an error.
        sys.stderr.close()
        return EXIT_OK
