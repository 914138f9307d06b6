"""Where exports may go, and how they are written: never into the series' own folder or a folder opened as a
study, never half a file."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from viewer.errors import ViewerError
from viewer.report.deidentify import installation_key, pseudo_uid


def source_folders(volume: Any) -> tuple[Path, ...]:
    """The folders holding the files of ``volume``'s slices (resolved, sorted)."""
    sources = getattr(volume, "sources", None) or []
    return tuple(sorted({Path(file).resolve().parent for file, _frame in sources}))


def opened_folders(paths: Iterable[str | Path]) -> tuple[Path, ...]:
    """The folders a user opened (resolved, sorted): a folder itself, a file's (a DICOMDIR's) parent folder."""
    folders = set()
    for path in paths:
        resolved = Path(path).expanduser().resolve()
        folders.add(resolved if resolved.is_dir() else resolved.parent)
    return tuple(sorted(folders))


def is_inside(target: Path, folder: Path) -> bool:
    """Whether resolved ``target`` is ``folder`` or lies below it."""
    return target == folder or folder in target.parents


def check_output_path(
    path: str | Path,
    volume: Any = None,
    *,
    folders: Iterable[Path] = (),
    opened: Iterable[Path] = (),
) -> Path:
    """Refuse an output path inside the analysed series' folder(s) or a folder opened as a study
    (:func:`opened_folders`); return it resolved.

    Exports are the reader's files, not the study's: writing beside the images would change the study folder
    (and a later import would take the report for part of the series). Study folders are read-only to GRU
    Viewer as a whole, not only the series' own folder.
    """
    target = Path(path).expanduser().resolve()
    protected = set(folders)
    if volume is not None:
        protected.update(source_folders(volume))
    if any(is_inside(target, folder) for folder in protected):
        raise ViewerError(
            "Cannot write the export",
            "the chosen place lies inside the folder of the series' images, which GRU Viewer never "
            "writes to; choose another folder",
            target,
        )
    for folder in opened:
        if is_inside(target, Path(folder)):
            raise ViewerError(
                "Cannot write the export",
                f"the chosen place lies inside {folder}, which was opened as a study folder, and GRU Viewer "
                "never writes into study folders; choose another folder",
                target,
            )
    return target


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, so no partial file is left.

    The file gets the permissions the user's umask gives any new file (``mkstemp`` would make it private, which
    an archive's import service running as another user could not read).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ViewerError("Cannot write the export", exc.strerror or str(exc), path) from exc


def result_json(result: Any, *, anonymize: bool = False, key: bytes | None = None) -> dict[str, Any]:
    """``result.to_dict()``, with the series' UIDs replaced as the report replaces them when ``anonymize``."""
    data = result.to_dict()
    if anonymize:
        _pseudonymise_series(data["series"], key)
    return data


def anonymize_batch_dict(data: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """A :meth:`~viewer.analysis.batch.BatchReport.to_dict` without identifiers: UIDs replaced as in the report,
    series descriptions removed (PS3.15 action X), error texts and skipped series (which name files and
    descriptions) reduced to counts."""
    results = []
    for entry in data.get("results", []):
        entry = {**entry, "description": "", "series": dict(entry["series"])}
        _pseudonymise_series(entry["series"], key)
        results.append(entry)
    failed = [
        {
            "series_uid": _pseudo(f.get("series_uid", ""), key),
            "description": "",
            "error": "withheld (de-identified)",
        }
        for f in data.get("failed", [])
    ]
    return {
        "results": results,
        "failed": failed,
        "skipped": len(data.get("skipped", [])),
        "deidentified": True,
    }


def _pseudonymise_series(series: dict[str, Any], key: bytes | None) -> None:
    for name in ("stack_uid", "series_uid", "study_uid"):
        if name in series:
            series[name] = _pseudo(str(series[name]), key)
    series["deidentified"] = True


def _pseudo(uid: str, key: bytes | None) -> str:
    """A stack uid is a series UID with ``#k`` appended; keep the suffix so stacks stay told apart."""
    key = installation_key() if key is None else key
    base, sep, suffix = uid.partition("#")
    return pseudo_uid(base, key) + (sep + suffix if sep else "")


def export_json(
    path: str | Path,
    result: Any,
    volume: Any = None,
    *,
    anonymize: bool = False,
    key: bytes | None = None,
) -> Path:
    """Write ``result`` as JSON (:func:`result_json`); refuses a path inside the series' folder."""
    target = check_output_path(path, volume)
    text = json.dumps(result_json(result, anonymize=anonymize, key=key), indent=2, ensure_ascii=False)
    write_atomic(target, (text + "\n").encode("utf-8"))
    return target
