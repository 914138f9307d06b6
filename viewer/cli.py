"""The ``gru-viewer`` command line: opens the viewer, or runs one headless job.

Heavy modules (Qt, torch, SimpleITK) are imported inside the command that needs them, so ``--help`` and
``--version`` answer at once and work without a display.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from viewer import __version__
from viewer.errors import CancelledError, ViewerError

if TYPE_CHECKING:
    from viewer.model.training import TrainSettings

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOTHING = 3
EXIT_NOT_ASSESSED = 4
EXIT_INTERRUPTED = 130
UNREADABLE_LISTED = 10
"""Skipped files listed when nothing could be analysed (the first ones; then how many more)."""

EPILOG = """\
commands run headless except 'gui' (which first checks, like 'preflight', that a window can open);
'gru-viewer PATH' is short for 'gru-viewer gui PATH'.

exit codes:
  0    success
  1    a file, series or job failed; the message says what and why
  2    wrong usage (unknown option, missing argument)
  3    nothing to do: no DICOM image found / nothing could be analysed
  4    analyze: every analysed series is outside the model's intended use ("not assessed", no finding)
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
        Path(args.json).write_text(json.dumps(index_to_dict(index), indent=2), encoding="utf-8")
    return EXIT_OK if index.patients else EXIT_NOTHING


def cmd_demo_data(args: argparse.Namespace) -> int:
    from viewer.synth.dataset import write_phantom_dataset

    if args.slice_mm is not None and args.family == "classic":
        raise ViewerError(
            "Cannot make the phantoms", "--slice-mm is for the wide and other families (classic is 5 mm)"
        )

    manifest = write_phantom_dataset(
        Path(args.out),
        studies=args.studies,
        seed=args.seed,
        matrix=args.matrix,
        family=args.family,
        slice_mm=args.slice_mm,
        progress=_progress_printer(True),
        workers=args.workers or (os.cpu_count() or 1),
    )
    n = len(manifest.studies)
    print(f"wrote {n} phantom stud{'y' if n == 1 else 'ies'} to {args.out} (labels: {manifest.labels_path})")
    return EXIT_OK


def cmd_gui(args: argparse.Namespace) -> int:
    from viewer.ui.preflight import check

    found = check()
    if not found.ok:  # before any QApplication: Qt would abort the process with a message users cannot act on
        print(found.problem, file=sys.stderr)
        return EXIT_ERROR
    from viewer.ui.app import run_app

    return run_app(args.paths)


def cmd_preflight(args: argparse.Namespace) -> int:
    import os

    from viewer.ui.preflight import check, install_command, missing_for_platform

    if args.install_command:
        missing = missing_for_platform("xcb")
        if not missing:
            return EXIT_OK
        command = install_command(missing, sudo=os.geteuid() != 0)
        if not command:
            print(
                f"Qt's xcb plugin lacks {', '.join(missing)}; no package is known for them here",
                file=sys.stderr,
            )
            return EXIT_ERROR
        print(command)
        return EXIT_OK
    found = check()
    if not found.ok:
        print(found.problem, file=sys.stderr)
        return EXIT_ERROR
    print(f"ok: Qt's '{found.platform}' platform plugin can start here")
    return EXIT_OK


def cmd_self_test(args: argparse.Namespace) -> int:
    import os

    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt is first imported: no display needed
    from viewer.ui.selftest import run_self_test

    return run_self_test(lambda line: print(line, flush=True))


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


def _log_line(quiet: bool) -> Callable[[str], None]:
    def log(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    return log


def _train_settings(args: argparse.Namespace) -> TrainSettings:
    """The run's settings: the options given, the defaults for the rest."""
    from viewer.model.training import TrainSettings

    defaults = TrainSettings()
    return TrainSettings(
        seed=args.seed,
        encoder_epochs=defaults.encoder_epochs if args.encoder_epochs is None else args.encoder_epochs,
        sequence_epochs=defaults.sequence_epochs if args.sequence_epochs is None else args.sequence_epochs,
        finetune_epochs=defaults.finetune_epochs if args.finetune_epochs is None else args.finetune_epochs,
        patience=args.patience,
        hu_jitter=defaults.hu_jitter if args.hu_jitter is None else args.hu_jitter,
        noise_hu=defaults.noise_hu if args.noise_hu is None else args.noise_hu,
        precision=args.precision,
        slab_fraction=args.slab_fraction,
        tilt_fraction=args.tilt_fraction,
        lr_encoder=defaults.lr_encoder if args.encoder_lr is None else args.encoder_lr,
        positives_per_series=args.positives_per_series,
    )


_FLAG_OF_SETTING = {
    "slab_fraction": "--slab-fraction",
    "tilt_fraction": "--tilt-fraction",
    "positives_per_series": "--positives-per-series",
    "precision": "--precision",
    "encoder_channels": "--encoder-channels",
    "input_size": "--input-size",
}


def _as_flags(message: str) -> str:
    """A settings error in the words of the command line: its flags, not the settings' field names."""
    for name, flag in _FLAG_OF_SETTING.items():
        message = message.replace(name, flag)
    return message


def cmd_train(args: argparse.Namespace) -> int:
    from viewer.model.config import ModelConfig
    from viewer.model.device import pick_device
    from viewer.model.workflow import default_checkpoint, portable_command, train_from_folders

    try:
        settings = _train_settings(args)
    except ValueError as err:
        raise ViewerError("Cannot train", _as_flags(str(err))) from None
    device = pick_device(args.device)
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint(args.out)
    if args.fresh and checkpoint.exists():
        checkpoint.unlink()
    fresh_only = [
        flag
        for flag, value in (("--sequence", args.sequence), ("--encoder-channels", args.encoder_channels))
        if value is not None
    ]
    if fresh_only and args.init:
        raise ViewerError(
            "Cannot train",
            f"{fresh_only[0]} is for a fresh network; --init continues the kind of its weights",
        )
    values: dict[str, object] = {}
    if args.sequence is not None:
        kind, layers = ("bigru", 2) if args.sequence == "bigru2" else (args.sequence, 1)
        values.update(sequence=kind, num_layers=layers)
    if args.encoder_channels is not None:
        values["encoder_channels"] = args.encoder_channels
    if args.input_size is not None:
        values["input_size"] = args.input_size
    try:
        config = ModelConfig(**values) if values else None
    except ValueError as err:
        raise ViewerError("Cannot train", _as_flags(str(err))) from None
    train_from_folders(
        args.data,
        args.out,
        config=config,
        labels=args.labels or None,
        val_data=args.val,
        val_labels=args.val_labels,
        val_fraction=args.val_fraction,
        settings=settings,
        name=args.name,
        version=args.model_version,
        device=device,
        checkpoint=checkpoint,
        cache=args.cache,
        init=args.init,
        hu_tolerance=args.hu_centring,
        command=portable_command(args.command_line, placeholders={"--cache": "DIR", "--checkpoint": "FILE"}),
        progress=_progress_printer(not args.quiet),
        log=_log_line(args.quiet),
    )
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from viewer.model.device import pick_device
    from viewer.model.evaluation import format_metrics
    from viewer.model.misses import format_rates
    from viewer.model.workflow import evaluate_folder

    if args.robustness:
        if args.cross_generator_to:
            raise ViewerError(
                "Cannot evaluate", "--cross-generator-to records plain evaluations, not --robustness"
            )
        return _evaluate_robustness(args)
    report, card, dataset = evaluate_folder(
        args.model,
        args.data,
        labels=args.labels,
        pixel_method=args.pixel_method,
        pixel_target=args.pixel_target,
        device=pick_device(args.device),
        update_card=args.update_card,
        add_to_card=args.add_to_card,
        cross_generator_to=args.cross_generator_to,
        command=args.command_line
        if args.update_card or args.add_to_card or args.cross_generator_to
        else None,
        progress=_progress_printer(not args.quiet),
    )
    print(f"model {card.name} {card.version} (sha256 {card.sha256[:12]}…)")
    print(f"data  {dataset.description}")
    print(f"pixel saliency: {report.pixel_method} of the {report.pixel_target} logit; {report.seconds:.0f} s")
    print(format_metrics(report.metrics))
    if report.by_group:
        print()
        print(format_rates(report.by_group))
    for message in [*dataset.missing, *report.failed]:
        print(f"skipped: {message}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    if args.update_card or args.add_to_card:
        print("model card updated with these numbers")
    if args.cross_generator_to:
        print(f"cross-generator row added to the card of {args.cross_generator_to}")
    return EXIT_OK if report.outcomes else EXIT_NOTHING


def cmd_threshold(args: argparse.Namespace) -> int:
    from viewer.model.device import pick_device
    from viewer.model.operating_point import RULE, format_choice
    from viewer.model.workflow import threshold_from_folders

    choice, card, failed = threshold_from_folders(
        args.model,
        args.val,
        labels=args.val_labels or None,
        device=pick_device(args.device),
        update_card=args.update_card,
        version=args.model_version,
        command=args.command_line if args.update_card else None,
        progress=_progress_printer(not args.quiet),
    )
    for message in failed:
        print(f"skipped: {message}", file=sys.stderr)
    print(f"model {card.name} {card.version} (sha256 {card.sha256[:12]}…)")
    print(f"rule: {RULE}")
    print(format_choice(choice))
    print(f"operating threshold {choice.threshold:.4f} (was {choice.previous:.4f})")
    if args.update_card:
        print("model card updated with this threshold; the weights did not change")
    return EXIT_OK


def cmd_ablation(args: argparse.Namespace) -> int:
    import torch

    from viewer.model.ablation import run_ablation
    from viewer.model.device import pick_device
    from viewer.model.training import TrainSettings
    from viewer.model.workflow import portable_command

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    defaults = TrainSettings()
    settings = TrainSettings(
        sequence_epochs=defaults.sequence_epochs if args.sequence_epochs is None else args.sequence_epochs
    )
    result = run_ablation(
        args.model,
        args.data,
        args.val,
        args.out,
        held_out=args.held_out,
        variants=args.variants,
        seeds=args.seeds,
        settings=settings,
        rounds=args.bootstrap,
        device=pick_device(args.device),
        series_cache=Path(args.cache) if args.cache else None,
        update_card=args.update_card,
        command=portable_command(
            args.command_line,
            placeholders={"--out": "DIR", "--held-out": "DIR", "--cache": "DIR"},
        ),
        progress=_progress_printer(not args.quiet),
        log=_log_line(args.quiet),
    )
    print(result.markdown_path.read_text(encoding="utf-8"))
    print(f"wrote {result.json_path} and {result.markdown_path}")
    if args.update_card:
        print("model card updated with the validation table; the weights did not change")
    return EXIT_OK


def _evaluate_robustness(args: argparse.Namespace) -> int:
    from viewer.model.device import pick_device
    from viewer.model.robustness import robustness_folder
    from viewer.model.robustness_table import format_table

    report, card, dataset = robustness_folder(
        args.model,
        args.data,
        labels=args.labels,
        device=pick_device(args.device),
        conditions=args.conditions.split(",") if args.conditions else None,
        update_card=args.update_card,
        thin_source=args.thin_source,
        command=args.command_line if args.update_card else None,
        progress=_progress_printer(not args.quiet),
    )
    print(f"model {card.name} {card.version} (sha256 {card.sha256[:12]}…)")
    print(f"data  {dataset.description}")
    print(
        f"source series: {report.source}; operating threshold {report.threshold:.4f}; {report.total_seconds:.0f} s"
    )
    print(format_table(report.rows))
    for message in [*dataset.missing, *report.failed]:
        print(f"skipped: {message}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(
            json.dumps(report.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8"
        )
    if args.update_card:
        print("model card updated with this robustness table")
    return EXIT_OK if report.baseline else EXIT_NOTHING


def cmd_reference(args: argparse.Namespace) -> int:
    from viewer.model.device import pick_device
    from viewer.model.workflow import reference_from_folders

    card = reference_from_folders(
        args.model,
        args.data,
        labels=args.labels or None,
        device=pick_device(args.device),
        progress=_progress_printer(not args.quiet),
    )
    print(
        f"wrote {card.reference['file']} (sha256 {card.reference['sha256'][:12]}…) from {card.reference['data']}"
    )
    print("model card updated; the weights did not change")
    return EXIT_OK


def cmd_analyze(args: argparse.Namespace) -> int:
    from viewer.analysis.batch import analyze_paths, summary_line
    from viewer.analysis.run import AnalysisOptions
    from viewer.errors import printable
    from viewer.report.output import check_output_path, opened_folders

    archive = [
        flag for flag, value in (("--dicom-results", args.dicom_results), ("--send", args.send)) if value
    ]
    if archive and args.anonymize:
        print(
            f"gru-viewer: {' and '.join(archive)} join the source study in the archive, so they take the "
            "identified report; leave out --anonymize (a de-identified copy never goes to an archive)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.send:
        from viewer.pacs.nodes import NodeBook

        NodeBook().get(args.send)  # an unknown node fails now, not after the analysis
    wants_report = bool(args.report or args.dicom_report or archive)
    opened = opened_folders(p for p in args.paths if Path(p).exists())
    for output in (args.report, args.dicom_report, args.dicom_results, args.json):
        if output:
            check_output_path(output, opened=opened)  # before any work: study folders are read-only
    report = analyze_paths(
        args.paths,
        series_uid=args.series,
        model_path=args.model,
        options=AnalysisOptions(device=args.device),
        keep_volumes=wants_report,
        progress=_progress_printer(not args.quiet),
    )
    for run in report.runs:
        print(printable(summary_line(run)))
    for message in report.skipped:
        print(f"skipped: {printable(message)}", file=sys.stderr)
    if args.json:
        from viewer.report.output import anonymize_batch_dict

        folders = {Path(f).resolve().parent for run in report.runs for f in run.stack.files}
        check_output_path(args.json, folders=folders)
        data = anonymize_batch_dict(report.to_dict()) if args.anonymize else report.to_dict()
        # A file name that is not valid UTF-8 stays a JSON escape ("\\udce9") rather than failing the write.
        Path(args.json).write_text(
            json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8", errors="backslashreplace"
        )
    if not report.analysed:
        for message in report.unreadable[:UNREADABLE_LISTED]:
            print(f"skipped: {printable(message)}", file=sys.stderr)
        if len(report.unreadable) > UNREADABLE_LISTED:
            print(f"skipped: … and {len(report.unreadable) - UNREADABLE_LISTED} more files", file=sys.stderr)
        print("gru-viewer: nothing could be analysed (no CT volume that loads)", file=sys.stderr)
        return EXIT_NOTHING
    if wants_report:
        _write_reports(args, report.analysed)
    if report.none_assessed:
        print("gru-viewer: not assessed: every series is outside the model's intended use", file=sys.stderr)
        return EXIT_NOT_ASSESSED
    return EXIT_OK


def _report_paths(pdf: Path, runs: Sequence) -> list[Path]:
    """One analysed series: ``pdf`` itself; several: ``<stem>_<series number>.pdf`` (the index where series
    numbers are missing or repeat)."""
    if len(runs) == 1:
        return [pdf]
    numbers = [run.stack.first.series_number for run in runs]
    unique = None not in numbers and len(set(numbers)) == len(numbers)
    tags = [str(n) for n in numbers] if unique else [str(i) for i in range(1, len(runs) + 1)]
    return [pdf.with_name(f"{pdf.stem}_{tag}{pdf.suffix or '.pdf'}") for tag in tags]


def _write_reports(args: argparse.Namespace, runs: Sequence) -> None:
    from viewer.analysis.model_cache import load_model
    from viewer.report import ReportOptions, build_report, save_dicom, save_pdf

    _model, card = load_model(args.model)
    pdf_paths = _report_paths(Path(args.report), runs) if args.report else [None] * len(runs)
    for run, pdf_path in zip(runs, pdf_paths, strict=True):
        built = build_report(run.volume, run.result, card, ReportOptions(anonymize=args.anonymize))
        if pdf_path is not None:
            print(f"report written to {save_pdf(built, pdf_path)}")
        if args.dicom_report:
            print(f"DICOM encapsulated PDF written to {save_dicom(built, args.dicom_report)}")
        if args.dicom_results or args.send:
            from viewer.report.dicom_results import build_result_objects, save_result_objects

            objects = build_result_objects(run.volume, run.result, built)
            kinds = ", ".join(f"{n} {kind}" for kind, n in Counter(objects.kinds()).items())
            for what in objects.left_out:
                print(f"left out: {what}", file=sys.stderr)
            if args.dicom_results:
                save_result_objects(objects, args.dicom_results, built.source_folders)
                print(f"DICOM result objects ({kinds}) written to {Path(args.dicom_results).resolve()}")
            if args.send:
                from viewer.pacs.commands import send_datasets

                print(send_datasets(args.send, objects.datasets, args))


def _channels(text: str) -> tuple[int, ...]:
    """``"16,32,64"`` → ``(16, 32, 64)``, for ``--encoder-channels``."""
    try:
        channels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of whole numbers: {text!r}") from None
    if any(c < 1 for c in channels):
        raise argparse.ArgumentTypeError(f"every channel count must be at least 1: {text!r}")
    return channels


def build_parser() -> argparse.ArgumentParser:
    from viewer.synth.dataset import PHANTOM_FAMILIES

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
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="open the demo study offscreen, analyse it, write a report, print one line per check and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("gui", help="open the viewer (default)")
    p.add_argument("paths", nargs="*", help="folder, DICOMDIR or files to open")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser(
        "preflight", help="check that the viewer's window can open here (system libraries, display)"
    )
    p.add_argument(
        "--install-command",
        action="store_true",
        help="print only the command that installs the system libraries Qt's xcb plugin lacks (nothing: none)",
    )
    p.set_defaults(func=cmd_preflight)

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
    p.add_argument(
        "--family",
        choices=PHANTOM_FAMILIES,
        default="classic",
        help="classic: 5 mm, three bleed kinds (default); wide: five kinds incl. small and faint ones, "
        "0.625-10 mm slices, artefacts and confounders; other: an independently written generator (own "
        "anatomy and rendering) for cross-generator validation",
    )
    p.add_argument(
        "--slice-mm",
        type=float,
        metavar="MM",
        help="wide and other families: every study at this slice thickness (default: drawn, 0.625-10 mm)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes making studies at once (0: one per core); the studies are the same for any N",
    )
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("bench", help="run benchmarks against baselines measured in the same run")
    p.add_argument("suites", nargs="*", help="index, load, gui, model, analysis, mpr (default: all)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument("--json", metavar="FILE", default="bench/results.json", help="write results as JSON")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("analyze", help="analyse CT series with the slice-GRU and print the findings")
    p.add_argument("paths", nargs="+", help="folder, DICOMDIR or files")
    p.add_argument("--series", metavar="UID", help="only this series (SeriesInstanceUID or stack uid)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda or mps")
    p.add_argument("--model", metavar="FILE", help="weights to use (default: the shipped model)")
    p.add_argument(
        "--report",
        metavar="FILE.pdf",
        help="write a PDF report (several series: FILE_<series number>.pdf); never inside the series' folder",
    )
    p.add_argument(
        "--dicom-report",
        metavar="DIR",
        help="write the report as a DICOM Encapsulated PDF instance (same study, new series) into DIR",
    )
    p.add_argument(
        "--dicom-results",
        metavar="DIR",
        help="write everything the archive takes into DIR, each a new series of the source study: the report "
        "(Encapsulated PDF), the finding (Comprehensive SR, TID 1500), the key images with the overlay "
        "(Secondary Capture) and the saliency (Segmentation)",
    )
    p.add_argument(
        "--send",
        metavar="NODE",
        help="store those same result objects on PACS node NODE (see 'gru-viewer pacs nodes'), into the source "
        "study: C-STORE, or STOW-RS for a DICOMweb node",
    )
    p.add_argument(
        "--secret-stdin",
        action="store_true",
        help="with --send: read the node's DICOMweb password/token from stdin",
    )
    p.add_argument(
        "--anonymize",
        action="store_true",
        help="de-identify the reports and the JSON (DICOM PS3.15 Annex E Basic Profile: pseudonymous ID, new "
        "UIDs, no dates or descriptions)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("train", help="train the slice-GRU on labelled DICOM studies")
    p.add_argument(
        "--data", action="append", required=True, metavar="DIR", help="folder of studies (repeatable)"
    )
    p.add_argument(
        "--labels", action="append", metavar="FILE", help="labels per --data folder (default DIR/labels.json)"
    )
    p.add_argument(
        "--val",
        action="append",
        metavar="DIR",
        help="validation folder (repeatable, e.g. one per phantom family: their series are pooled for the best "
        "epochs and the threshold; default: a share of the training series)",
    )
    p.add_argument(
        "--val-labels",
        action="append",
        metavar="FILE",
        help="labels per --val folder (default DIR/labels.json)",
    )
    p.add_argument("--val-fraction", type=float, default=0.15, help="share held back when --val is not given")
    p.add_argument(
        "--out", required=True, metavar="FILE", help="weights to write (.safetensors, card beside it)"
    )
    p.add_argument("--name", default="slice_gru", help="model name on the card")
    p.add_argument("--model-version", default="0.1.0", help="model version on the card")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--encoder-epochs", type=int, help="epochs of the slice-CNN stage")
    p.add_argument("--sequence-epochs", type=int, help="epochs of the GRU stage")
    p.add_argument("--finetune-epochs", type=int, help="epochs of the end-to-end stage")
    p.add_argument(
        "--sequence",
        choices=("bigru", "bigru2", "bigru_attn", "bilstm", "pool"),
        help="sequence part of a fresh network (default bigru, the shipped kind; bigru2: two stacked layers); "
        "only the GRU kinds have the viewer's gate and hidden-state evidence",
    )
    p.add_argument(
        "--encoder-channels",
        type=_channels,
        metavar="C,C,...",
        help="channels of the slice CNN's stem and of each of its stages, for a fresh network (default "
        "16,32,64,128; each stage halves the slice, so --input-size must be divisible by 2 to the power of their "
        "count)",
    )
    p.add_argument(
        "--hu-jitter", type=float, metavar="HU", help="largest random HU offset (augmentation, default 5)"
    )
    p.add_argument(
        "--noise-hu", type=float, metavar="HU", help="largest SD of added noise (augmentation, default 6)"
    )
    p.add_argument(
        "--encoder-lr",
        type=float,
        metavar="LR",
        help="peak learning rate of the slice-CNN stage (default 0.002; lower it to train on from --init "
        "weights without unlearning them at the warm restart)",
    )
    p.add_argument(
        "--slab-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="share of the slice CNN's training slices replaced by the mean of 2 or 3 adjacent slices, labelled a "
        "bleed when any of them is (thick-slice augmentation, default 0)",
    )
    p.add_argument(
        "--tilt-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="share of the slice CNN's training slices re-cut on a plane tilted by up to about 15 degrees, where "
        "the plane passes through bleed-free slices only (gantry-tilt augmentation, default 0)",
    )
    p.add_argument(
        "--positives-per-series",
        type=int,
        default=0,
        metavar="N",
        help="at most N bleed slices of each series per slice-CNN epoch, drawn afresh each epoch, so large bleeds "
        "spanning many slices do not outnumber small ones (default 0: all of them)",
    )
    p.add_argument(
        "--hu-centring",
        type=float,
        metavar="HU",
        help="re-centre each series' soft-tissue median HU on the training series' mean (taken from this run's "
        "training series) when it is more than HU off; the viewer then does the same before every analysis "
        "(a model given with --init that has it keeps it)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=0,
        metavar="N",
        help="stop a stage after N epochs without a better validation score and keep its best epoch (default 0: "
        "run every epoch)",
    )
    p.add_argument(
        "--input-size",
        type=int,
        help="in-plane pixels the model sees (default 192; with --init, that model's size unless given)",
    )
    p.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda or mps")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: train the slice CNN under bfloat16 autocast, about 3x faster on CPUs with AVX-512 BF16 or AMX "
        "and on GPUs, slower elsewhere; weights and validation stay float32 (default fp32)",
    )
    p.add_argument(
        "--checkpoint", metavar="FILE", help="resumable state (default OUT.checkpoint.safetensors)"
    )
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--init", metavar="FILE", help="start from these trained weights (.safetensors with card)")
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="where prepared series are cached, and (in DIR/features) the frozen slice CNN's features of the "
        "training series, which a later run over the same CNN reads instead of computing",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="print a model's metrics on labelled DICOM studies")
    p.add_argument("--model", required=True, metavar="FILE", help="weights (.safetensors with its card)")
    p.add_argument("--data", required=True, metavar="DIR", help="folder of labelled studies")
    p.add_argument("--labels", metavar="FILE", help="labels (default DIR/labels.json)")
    p.add_argument(
        "--pixel-method",
        default="gradient_x_input",
        choices=("gradient_x_input", "smoothgrad", "integrated_gradients"),
        help="pixel saliency scored by the pointing game",
    )
    p.add_argument(
        "--pixel-target",
        default="slice",
        choices=("slice", "study"),
        help="the logit the pixel saliency explains: each slice's own (default) or the study's",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--json", metavar="FILE", help="also write the metrics and per-series results as JSON")
    card = p.add_mutually_exclusive_group()
    card.add_argument("--update-card", action="store_true", help="write these metrics into the model card")
    card.add_argument(
        "--add-to-card",
        metavar="TITLE",
        help="record these metrics in the card as a further evaluation under TITLE (e.g. another family)",
    )
    card.add_argument(
        "--cross-generator-to",
        metavar="FILE",
        help="record these metrics, of a model trained on another phantom family, as a row of the "
        "cross-generator table on the card of FILE (e.g. the shipped weights); --model's own card is left alone",
    )
    p.add_argument(
        "--robustness",
        action="store_true",
        help="instead: the study AUROC under acquisition changes (noise, HU offset, slice thickness, missing "
        "slices, feet first, gantry tilt, matrix, field of view); with --update-card, the card's robustness "
        "table",
    )
    p.add_argument(
        "--conditions",
        metavar="KEYS",
        help="with --robustness: only these conditions, comma-separated (noise_5, noise_10, offset_-10, "
        "offset_+10, thickness_2.5, thickness_5, thickness_10, missing_10pct, feet_first, tilt_15, shift_half, "
        "matrix_256, matrix_512, fov_180, fov_250, fov_300; default all)",
    )
    p.add_argument(
        "--thin-source",
        action="store_true",
        help="with --robustness: DIR holds thin slices (e.g. demo-data --slice-mm 1.25); only the thickness rows "
        "run, and --update-card keeps them beside the main table instead of replacing it",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "threshold",
        help="choose a trained model's operating threshold on validation folders (one per phantom family)",
    )
    p.add_argument("--model", required=True, metavar="FILE", help="weights (.safetensors with its card)")
    p.add_argument(
        "--val",
        action="append",
        required=True,
        metavar="DIR",
        help="validation folder (repeatable; the series of all are pooled); never a held-out set",
    )
    p.add_argument(
        "--val-labels",
        action="append",
        metavar="FILE",
        help="labels per --val folder (default DIR/labels.json)",
    )
    p.add_argument(
        "--update-card",
        action="store_true",
        help="write the threshold into the model card, with the rule, the sets and the threshold it replaces",
    )
    p.add_argument(
        "--model-version", metavar="VERSION", help="with --update-card: the card's new version (same weights)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_threshold)

    p = sub.add_parser(
        "reference",
        help="rebuild the normal reference series of the hidden-state track (after the encoder changed)",
    )
    p.add_argument("--model", required=True, metavar="FILE", help="weights (.safetensors with its card)")
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="DIR",
        help="folder of labelled studies (repeatable)",
    )
    p.add_argument(
        "--labels", action="append", metavar="FILE", help="labels per --data folder (default DIR/labels.json)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser(
        "ablation",
        help="train alternatives to the sequence part on one model's frozen encoder and compare them",
    )
    p.add_argument(
        "--model", required=True, metavar="FILE", help="trained model whose slice encoder all variants share"
    )
    p.add_argument(
        "--data", action="append", required=True, metavar="DIR", help="training folder (repeatable)"
    )
    p.add_argument("--val", required=True, metavar="DIR", help="validation folder (the reported numbers)")
    p.add_argument(
        "--held-out", metavar="DIR", help="also score a held-out folder, reported apart (only when asked)"
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="results, feature cache and finished runs (resumable)"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds per variant (default 0 1)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=["pool", "bigru", "bigru2", "bigru_attn", "bilstm"],
        choices=("pool", "bigru", "bigru2", "bigru_attn", "bilstm"),
        help="variants to train (default all)",
    )
    p.add_argument("--sequence-epochs", type=int, help="epochs of the sequence stage (default as in train)")
    p.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)"
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads (1 suits the small sequence batches, and a busy machine, best)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--cache", metavar="DIR", help="where prepared series are cached")
    p.add_argument(
        "--update-card", action="store_true", help="write the validation table into the model's card"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_ablation)

    from viewer.pacs.commands import add_pacs_parser

    add_pacs_parser(sub)
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
    top_level = ("-v", "--verbose", "--self-test")
    if not any(a in ("-h", "--help", "--version") for a in argv) and (
        first is None or first not in _commands(parser)
    ):
        argv = [a for a in argv if a in top_level] + ["gui"] + [a for a in argv if a not in top_level]
    args = parser.parse_args(argv)
    args.command_line = ["gru-viewer", *argv]  # as given, for the model card (main([...]) in tests too)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(cmd_self_test(args) if args.self_test else args.func(args))
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
