"""The header index: folders, DICOMDIRs and files into patients → studies → series; its cache; its safety."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet

from viewer.bench.index import run_index_benchmark
from viewer.dicom import index as index_module
from viewer.dicom.cache import RETENTION_DAYS, HeaderCache, default_db_path, forget_index
from viewer.dicom.dicomdir import OUTSIDE, check_file_id, read_dicomdir
from viewer.dicom.file_stamp import FileStamp
from viewer.dicom.headers import InstanceHeader, SkippedFile, read_header
from viewer.dicom.index import StudyIndex, format_index, index_to_dict, scan
from viewer.errors import CancelledError, ViewerError
from viewer.synth.folders import make_synthetic_folder

TEST_FILES = Path(get_testdata_file("CT_small.dcm")).parent
DICOMDIR_TREE = TEST_FILES / "dicomdirtests"


@pytest.fixture()
def media(tmp_path: Path) -> Path:
    """A copy of pydicom's DICOMDIR test tree (modification times kept)."""
    dest = tmp_path / "media"
    shutil.copytree(DICOMDIR_TREE, dest)
    return dest


class ReadCounter:
    """Counts the files whose headers :func:`scan` reads in this process (it still reads them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        real = index_module.read_header

        def counting(path: str) -> InstanceHeader:
            self.paths.append(str(path))
            return real(path)

        monkeypatch.setattr(index_module, "read_header", counting)


def _truth_from_dicomdir(path: Path) -> dict[str, Counter]:
    """Patients, studies and images per series, from the DICOMDIR's own records (pydicom's FileSet)."""
    fs = FileSet(pydicom.dcmread(path))
    images_per_series: Counter = Counter()
    patients, studies = set(), set()
    for instance in fs:
        patients.add(instance.PatientID)
        studies.add(instance.StudyInstanceUID)
        images_per_series[instance.SeriesInstanceUID] += 1
    return {"patients": Counter(patients), "studies": Counter(studies), "series": images_per_series}


def _counts(index: StudyIndex) -> dict[str, Counter]:
    return {
        "patients": Counter(p.patient_id for p in index.patients),
        "studies": Counter(st.study_uid for p in index.patients for st in p.studies),
        "series": Counter({s.series_uid: s.n_images for s in index.series()}),
    }


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder below ``folder``: kind, size, mtime and content hash."""
    out: dict[str, tuple] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            p = Path(root, name)
            st = p.lstat()
            out[str(p.relative_to(folder))] = ("dir", st.st_mtime_ns, tuple(sorted(os.listdir(p))))
        for name in files:
            p = Path(root, name)
            st = p.lstat()
            out[str(p.relative_to(folder))] = (
                "file",
                st.st_size,
                st.st_mtime_ns,
                hashlib.sha256(p.read_bytes()).hexdigest(),
            )
    st = folder.stat()
    out["."] = ("dir", st.st_mtime_ns, tuple(sorted(os.listdir(folder))))
    return out


# -- structure -----------------------------------------------------------------------------------------------


def test_folder_matches_the_dicomdir_records(cache_dir: Path) -> None:
    truth = _truth_from_dicomdir(DICOMDIR_TREE / "DICOMDIR")
    assert (len(truth["patients"]), len(truth["studies"]), len(truth["series"])) == (2, 6, 13)

    index = scan(DICOMDIR_TREE)
    assert _counts(index) == truth
    assert sum(s.n_images for s in index.series()) == sum(truth["series"].values()) == 31
    # Everything else in the tree is accounted for: TINY_ALPHA's images have no pixel data, the DICOMDIRs are
    # directories and the READMEs text.
    reasons = Counter(s.reason for s in index.skipped)
    assert reasons["no pixel data (not an image)"] == 50
    assert reasons["not DICOM"] == 2
    assert sum(n for r, n in reasons.items() if "DICOMDIR" in r) == 8
    assert index.n_files == 31 + len(index.skipped)


def test_dicomdir_gives_the_same_index_as_its_folder(cache_dir: Path) -> None:
    by_folder = scan(DICOMDIR_TREE, use_cache=False)
    by_dicomdir = scan(DICOMDIR_TREE / "DICOMDIR", use_cache=False)
    assert _counts(by_dicomdir) == _counts(by_folder) == _truth_from_dicomdir(DICOMDIR_TREE / "DICOMDIR")
    assert by_dicomdir.n_files == 31
    assert by_dicomdir.skipped == []
    for series in by_dicomdir.series():
        assert series.stacks, series.series_uid
        assert sum(st.n_slices for st in series.stacks) == series.n_images
        assert {h.path for h in series.headers} == {f for st in series.stacks for f in st.files}


def test_series_entries_and_stack_lookup(cache_dir: Path) -> None:
    index = scan(DICOMDIR_TREE / "DICOMDIR")
    ct = next(s for s in index.series() if s.description == "Routine Brain")
    first = pydicom.dcmread(ct.headers[0].path)
    assert (ct.modality, ct.number, ct.rows, ct.columns) == (
        "CT",
        int(first.SeriesNumber),
        first.Rows,
        first.Columns,
    )
    assert ct.date == first.get("SeriesDate", first.StudyDate)
    study = next(st for p in index.patients for st in p.studies if ct in st.series)
    assert study.date == first.StudyDate and study.accession_number == first.AccessionNumber
    stacks = list(index.stacks())
    assert len(stacks) >= 13
    for stack in stacks:
        assert index.find_stack(stack.uid) is stack
    assert index.find_stack("1.2.3.nonexistent") is None
    assert index.find_series(ct.series_uid) is ct


def test_a_single_file_and_a_list_of_files(cache_dir: Path) -> None:
    one = scan(TEST_FILES / "CT_small.dcm")
    assert [s.n_images for s in one.series()] == [1] and one.roots == [str(TEST_FILES / "CT_small.dcm")]
    two = scan([str(TEST_FILES / "CT_small.dcm"), TEST_FILES / "MR_small.dcm", TEST_FILES / "README.txt"])
    assert sorted(s.modality for s in two.series()) == ["CT", "MR"]
    assert [(Path(s.path).name, s.reason) for s in two.skipped] == [("README.txt", "not DICOM")]
    with pytest.raises(ViewerError, match="no such file"):
        scan(TEST_FILES / "does-not-exist")
    with pytest.raises(ViewerError):
        scan([])


# -- skip reasons --------------------------------------------------------------------------------------------


def test_skip_reasons(tmp_path: Path, cache_dir: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in (
        "MR_truncated.dcm",
        "rtplan_truncated.dcm",
        "no_meta.dcm",
        "ExplVR_LitEndNoMeta.dcm",
        "CT_small.dcm",
    ):
        shutil.copy2(TEST_FILES / name, folder / name)
    shutil.copy2(DICOMDIR_TREE / "TINY_ALPHA" / "README", folder / "README")
    # A dataset without preamble and file meta, as older writers made them: must be indexed, not skipped.
    ct = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    del ct.file_meta
    ct.preamble = None
    pydicom.dcmwrite(
        folder / "ct_no_meta.dcm", ct, implicit_vr=False, little_endian=True, enforce_file_format=False
    )
    assert (folder / "ct_no_meta.dcm").read_bytes()[:2] == b"\x08\x00"

    index = scan(folder)
    reasons = {Path(s.path).name: s.reason for s in index.skipped}
    assert reasons["MR_truncated.dcm"].startswith("truncated")
    assert reasons["rtplan_truncated.dcm"].startswith("truncated")
    assert reasons["README"] == "not DICOM"
    # No file meta but a valid dataset: read as DICOM (it is an RT Ion Plan, so it has no pixel data).
    assert reasons["ExplVR_LitEndNoMeta.dcm"] == "no pixel data (not an image)"
    # pydicom's no_meta.dcm starts with one stray byte before the dataset (its first tag reads as (0820,0500)
    # even in pydicom), so it is not a readable dataset; the same dataset written cleanly is indexed.
    raw = (TEST_FILES / "no_meta.dcm").read_bytes()
    assert raw[0] == 0x20 and raw[1:] == (folder / "ct_no_meta.dcm").read_bytes()
    assert "SOPClassUID" not in pydicom.dcmread(TEST_FILES / "no_meta.dcm", force=True)
    assert reasons["no_meta.dcm"] == "not DICOM"

    indexed = sorted(h.path for s in index.series() for h in s.headers)
    assert [Path(p).name for p in indexed] == ["CT_small.dcm"]
    assert index.skipped[
        [Path(s.path).name for s in index.skipped].index("ct_no_meta.dcm")
    ].reason.startswith("duplicate of")
    header = read_header(folder / "ct_no_meta.dcm")
    assert header.transfer_syntax_uid == "1.2.840.10008.1.2.1" and header.rows == 128


def test_what_a_mac_leaves_on_media_is_left_out_not_reported(tmp_path: Path, cache_dir: Path) -> None:
    folder = tmp_path / "stick"
    folder.mkdir()
    shutil.copy2(TEST_FILES / "CT_small.dcm", folder / "IM0001")
    (folder / "._IM0001").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 4000)  # an AppleDouble header
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 100)
    for hidden in (".Trashes", ".Spotlight-V100", "__MACOSX"):
        (folder / hidden).mkdir()
        shutil.copy2(TEST_FILES / "CT_small.dcm", folder / hidden / "copy.dcm")
    index = scan(folder)
    assert index.skipped == []
    assert [Path(h.path).name for s in index.series() for h in s.headers] == ["IM0001"]


def test_degenerate_geometry_does_not_stop_the_index(tmp_path: Path, cache_dir: Path) -> None:
    folder = tmp_path / "bad-geometry"
    folder.mkdir()
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    ds.ImageOrientationPatient = [1, 0, 0, 1, 0, 0]  # parallel row and column cosines
    for k in range(3):
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID.rsplit('.', 1)[0]}.{k + 1}"
        ds.ImagePositionPatient = [0, 0, float(k)]
        ds.save_as(folder / f"{k}.dcm")
    (folder / "empty.dcm").write_bytes(b"")
    index = scan(folder)
    (series,) = index.series()
    assert series.n_images == 3 and sum(st.n_slices for st in series.stacks) == 3
    assert any(w.kind == "no_geometry" for st in series.stacks for w in st.warnings)
    assert [(Path(s.path).name, s.reason) for s in index.skipped] == [("empty.dcm", "empty file")]


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "JPEG2000.dcm", "MR_small_implicit.dcm", "SC_rgb_rle_2frame.dcm"]
)
def test_a_truncated_file_is_always_skipped_never_raises(tmp_path: Path, name: str) -> None:
    data = (TEST_FILES / name).read_bytes()
    pixels = pydicom.dcmread(TEST_FILES / name, defer_size=64).get_item(0x7FE00010, keep_deferred=True)
    # Trailing padding may follow the pixel data; a cut there leaves a complete image.
    end = len(data) if pixels.length == 0xFFFFFFFF else pixels.value_tell + pixels.length
    target = tmp_path / name
    reasons = Counter()
    for cut in sorted({*range(132, end, max(1, end // 40)), end - 1}):
        target.write_bytes(data[:cut])
        with pytest.raises(SkippedFile) as info:
            read_header(target)
        reasons[info.value.why.split(" (")[0]] += 1
    # Cuts inside the pixel data and inside the header's values are called truncated; only a cut exactly
    # between two elements before the image description leaves nothing to tell a truncated file by.
    assert (
        reasons["truncated: the file ends inside its pixel data"]
        + reasons["truncated: the file ends inside its compressed pixel data"]
        >= 1
    )
    assert sum(n for r, n in reasons.items() if r.startswith("truncated")) >= 0.6 * sum(reasons.values())
    assert set(reasons) <= {
        "truncated: the file ends inside its pixel data",
        "truncated: the file ends inside its compressed pixel data",
        "truncated: the file ends inside its header",
        "no pixel data",
        "no pixel data although the header describes an image",
        "not DICOM",
    }


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def test_fast_header_values_equal_pydicom_conversion() -> None:
    """Values decoded from raw bytes must equal pydicom's own conversion, on every bundled image."""
    checked = 0
    for path in sorted(TEST_FILES.glob("*.dcm")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # some bundled files hold odd values on purpose
            try:
                header = read_header(path)
            except SkippedFile:
                continue
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)

        assert header.patient_name == _text(ds, "PatientName"), path.name
        assert header.patient_id == _text(ds, "PatientID"), path.name
        assert header.study_instance_uid == _text(ds, "StudyInstanceUID"), path.name
        assert header.series_instance_uid == _text(ds, "SeriesInstanceUID"), path.name
        assert header.sop_instance_uid == (
            _text(ds, "SOPInstanceUID") or str(ds.file_meta.MediaStorageSOPInstanceUID)
        )
        assert header.modality == _text(ds, "Modality"), path.name
        assert (header.rows, header.columns) == (ds.Rows, ds.Columns), path.name
        assert header.bits_allocated == ds.get("BitsAllocated", 0), path.name
        assert header.instance_number == (
            int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None
        )
        if "ImagePositionPatient" in ds and header.number_of_frames == 1:
            assert header.frames[0].position == tuple(float(v) for v in ds.ImagePositionPatient), path.name
        if "PixelSpacing" in ds and header.number_of_frames == 1:
            assert header.frames[0].pixel_spacing == tuple(float(v) for v in ds.PixelSpacing), path.name
        if ds.get("RescaleSlope") not in (None, ""):
            assert header.rescale_slope == float(ds.RescaleSlope), path.name
        assert header.image_type == tuple(str(v).strip().upper() for v in (ds.get("ImageType") or ())), (
            path.name
        )
        checked += 1
    assert checked >= 30


# -- the persistent cache ------------------------------------------------------------------------------------


def test_second_scan_reads_no_file(media: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = ReadCounter(monkeypatch)
    first = scan(media, workers=1)
    assert first.n_cached == 0 and len(reads.paths) == first.n_files == 91
    reads.paths.clear()
    second = scan(media, workers=1)
    assert reads.paths == []
    assert second.n_cached == second.n_files == first.n_files
    assert _counts(second) == _counts(first)
    assert [(s.path, s.reason) for s in second.skipped] == [(s.path, s.reason) for s in first.skipped]
    assert default_db_path().parent == cache_dir and default_db_path().exists()


def test_changed_files_are_reread_and_deleted_ones_dropped(
    media: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan(media, workers=1)
    touched = media / "77654033" / "CR1" / "6154"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    grown = media / "TINY_ALPHA" / "README"
    with open(grown, "ab") as f:
        f.write(b"\n")
    os.utime(grown, ns=(st.st_atime_ns, grown.stat().st_mtime_ns))
    deleted = media / "98892003" / "MR2" / "4981"
    deleted_uid = pydicom.dcmread(deleted).SeriesInstanceUID
    before = scan(media, use_cache=False).find_series(deleted_uid).n_images
    deleted.unlink()

    reads = ReadCounter(monkeypatch)
    index = scan(media, workers=1)
    assert sorted(reads.paths) == sorted([str(touched), str(grown)])
    assert index.n_read == 2 and index.n_cached == index.n_files - 2
    assert index.find_series(deleted_uid).n_images == before - 1
    assert str(deleted) not in {h.path for s in index.series() for h in s.headers}
    with HeaderCache() as cache:
        rows = cache.under(str(media))
    assert str(deleted) not in rows and str(touched) in rows
    assert rows[str(touched)].stamp == FileStamp.of(touched.stat())


def test_a_file_replaced_with_its_size_and_modification_time_kept_is_read_again(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cp -p``, ``rsync -t`` or unpacking another version keeps size and mtime: the cached header, naming
    another patient, must not be answered for the new file."""
    folder = tmp_path / "study"
    folder.mkdir()
    original = folder / "1.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), original)
    before = scan(folder, workers=1)
    assert [p.name for p in before.patients] == ["CompressedSamples^CT1"]

    ds = pydicom.dcmread(original)
    ds.PatientName = "AnotherPatient^Samu^Z"  # as long as the original name: the file keeps its size
    replacement = tmp_path / "replacement.dcm"
    ds.save_as(replacement)
    old = original.stat()
    assert replacement.stat().st_size == old.st_size
    for _ in range(40):  # setting the times sets the status-change time: wait out a coarse file-system clock
        os.utime(replacement, ns=(old.st_atime_ns, old.st_mtime_ns))
        if replacement.stat().st_ctime_ns != old.st_ctime_ns:
            break
        time.sleep(0.05)
    os.replace(replacement, original)
    new = original.stat()
    assert (new.st_size, new.st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    assert new.st_ctime_ns != old.st_ctime_ns

    reads = ReadCounter(monkeypatch)
    after = scan(folder, workers=1)
    assert reads.paths == [str(original)]
    assert [p.name for p in after.patients] == ["AnotherPatient^Samu^Z"]


def test_old_rows_are_dropped_and_read_again(
    media: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers (patient names and IDs) are not kept for ever: a row older than the retention is read again."""
    first = scan(media, workers=1)
    old = media / "77654033" / "CR1" / "6154"
    with HeaderCache() as cache:
        row = cache.under(str(media))[str(old)]
        cache.store([row], now=time.time() - (RETENTION_DAYS + 1) * 86400)
    reads = ReadCounter(monkeypatch)
    again = scan(media, workers=1)
    assert reads.paths == [str(old)]
    assert again.n_cached == first.n_files - 1 and _counts(again) == _counts(first)
    with HeaderCache() as cache:  # a retention of nothing empties it
        cache.prune(0)
        assert cache.count() == 0


def test_forget_index_removes_every_cached_header(media: Path, cache_dir: Path) -> None:
    scan(media)
    db = default_db_path()
    assert db.exists()
    forget_index()
    assert not any(Path(f"{db}{suffix}").exists() for suffix in ("", "-wal", "-shm", "-journal"))
    forget_index()  # nothing there: still fine
    assert scan(media).n_cached == 0
    db.unlink()
    db.mkdir()  # something that cannot be unlinked as a file: a clear error naming it
    with pytest.raises(ViewerError, match="Cannot delete the header index") as err:
        forget_index()
    assert err.value.path == str(db)


def test_a_corrupt_cache_is_rebuilt(media: Path, cache_dir: Path) -> None:
    scan(media)
    db = default_db_path()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"this is not an SQLite database" * 100)
    index = scan(media)
    assert index.n_cached == 0 and len(list(index.series())) == 13
    assert scan(media).n_cached == index.n_files
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_cache_that_cannot_be_created_does_not_stop_a_scan(
    media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(
        "GRU_VIEWER_CACHE_DIR", str(blocker / "cache")
    )  # a folder cannot be made inside a file
    index = scan(media)
    assert index.n_cached == 0 and len(list(index.series())) == 13


def _scan_in_child(folder: str) -> tuple[int, int, int]:
    index = scan(folder, workers=1)
    return index.n_files, len(list(index.series())), index.n_cached


def test_two_processes_scanning_at_once(media: Path, cache_dir: Path) -> None:
    copies = [media]
    for k in range(3):
        copies.append(media.parent / f"copy{k}")
        shutil.copytree(media, copies[-1])
    with ProcessPoolExecutor(2, mp_context=get_context("fork")) as pool:
        results = list(pool.map(_scan_in_child, [str(c) for c in copies * 2]))
    assert {(n, s) for n, s, _ in results} == {(91, 13)}
    with HeaderCache() as cache:
        assert cache.available and cache.count() == 4 * 91
    assert all(scan(c).n_cached == 91 for c in copies)


# -- safety --------------------------------------------------------------------------------------------------


def _rewrite_image_records(dicomdir: Path, new_ids: list[object]) -> list[str]:
    """Point the first IMAGE records at ``new_ids``; returns the files those records named before."""
    ds = pydicom.dcmread(dicomdir)
    records = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    before = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "../" and "/" are not valid CS characters: that is the point
        for record, new_id in zip(records, new_ids, strict=False):
            before.append(str(dicomdir.parent.joinpath(*record.ReferencedFileID)))
            record.ReferencedFileID = new_id
        ds.save_as(dicomdir)
    return before


def test_dicomdir_references_outside_its_folder_are_refused(
    media: Path, tmp_path: Path, cache_dir: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.dcm"
    shutil.copy2(TEST_FILES / "CT_small.dcm", secret)  # a valid image: reading it would index it
    (media / "98892001" / "escape").symlink_to(outside, target_is_directory=True)
    new_ids = [
        ["..", "..", "..", "..", "..", "..", "etc", "passwd"],
        ["..", "outside", "secret.dcm"],
        str(secret),  # an absolute path
        ["98892001", "escape", "secret.dcm"],  # inside by name, outside through a symbolic link
        ["", "outside", "secret.dcm"],  # "\outside\secret.dcm": rooted
    ]
    replaced = _rewrite_image_records(media / "DICOMDIR", new_ids)

    listing = read_dicomdir(media / "DICOMDIR")
    assert len(listing.refused) == len(new_ids)
    assert all(OUTSIDE in why and path == str(media / "DICOMDIR") for path, why in listing.refused)
    assert str(secret) not in listing.files and len(listing.files) == 31 - len(new_ids)

    index = scan(media / "DICOMDIR")
    refusals = [s for s in index.skipped if OUTSIDE in s.reason]
    assert len(refusals) == len(new_ids)
    assert any(s.reason.endswith("../etc/passwd' (not read)") for s in refusals)
    indexed = {h.path for s in index.series() for h in s.headers}
    assert str(secret) not in indexed and not (indexed & set(replaced))
    assert pydicom.dcmread(secret).SOPInstanceUID not in {
        h.sop_instance_uid for s in index.series() for h in s.headers
    }
    assert sum(s.n_images for s in index.series()) == 31 - len(new_ids)
    assert "refers outside its folder" in format_index(index)


@pytest.mark.parametrize(
    ("components", "problem"),
    [
        (["A", "B"], None),
        (["..", "A"], OUTSIDE),
        (["A", ".."], OUTSIDE),
        (["A/../../B"], OUTSIDE),
        (["/etc/passwd"], OUTSIDE),
        (["C:", "WINDOWS"], OUTSIDE),
        (["\\\\server\\share"], OUTSIDE),
        (["A", "B\x00"], "has an invalid file ID component 'B\\x00'"),
        ([], "has an empty file ID"),
    ],
)
def test_file_id_checks(components: list[str], problem: str | None) -> None:
    assert check_file_id(components) == problem


def test_scanning_writes_nothing_under_the_folder(media: Path, cache_dir: Path) -> None:
    before = _snapshot(media)
    time.sleep(0.01)
    scan(media)
    scan(media / "DICOMDIR")
    scan(media)
    scan(media / "DICOMDIR", use_cache=False)
    assert _snapshot(media) == before
    assert default_db_path().exists() and media not in default_db_path().parents


def test_symlink_loops_and_links_out_of_the_tree(media: Path, tmp_path: Path, cache_dir: Path) -> None:
    (media / "98892001" / "loop").symlink_to(media, target_is_directory=True)
    (media / "98892003" / "MR1" / "self").symlink_to(media / "98892003", target_is_directory=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy2(TEST_FILES / "MR_small.dcm", elsewhere / "mr.dcm")
    (media / "out").symlink_to(elsewhere, target_is_directory=True)
    (media / "dangling").symlink_to(tmp_path / "missing")

    index = scan(media)
    assert _counts(index) == _truth_from_dicomdir(DICOMDIR_TREE / "DICOMDIR")
    reasons = {Path(s.path).name: s.reason for s in index.skipped}
    assert reasons["out"].startswith("symbolic link to a folder outside")
    assert reasons["dangling"] == "broken symbolic link"
    assert index.n_files == scan(DICOMDIR_TREE, use_cache=False).n_files


# -- progress, cancel, workers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic")
    make_synthetic_folder(folder, n_files=400, n_series=4, size=16, n_studies=2)
    return folder


def test_worker_processes_give_the_same_index(synthetic: Path, cache_dir: Path) -> None:
    serial = scan(synthetic, use_cache=False, workers=1)
    parallel = scan(synthetic, use_cache=False, workers=2)
    assert _counts(parallel) == _counts(serial)
    assert _counts(serial)["series"] == Counter({s.series_uid: 100 for s in serial.series()})
    for a, b in zip(serial.series(), parallel.series(), strict=True):
        assert a.headers == b.headers
        assert [st.files for st in a.stacks] == [st.files for st in b.stacks]
        assert [st.spacing for st in a.stacks] == [1.0]
    assert serial.skipped == parallel.skipped == []


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_stops_quickly(synthetic: Path, cache_dir: Path, workers: int) -> None:
    reading = False
    read = 0
    checks_while_reading = 0
    requested: list[float] = []

    def progress(done: int, total: int, text: str) -> None:
        nonlocal reading, read
        reading = reading or total > 0
        read = done if total > 0 else read

    def cancel() -> bool:
        # Asked between files (one process) or between chunk waits (workers): stop part-way through, once some
        # headers are in (on a loaded machine worker processes can take several waits to start).
        nonlocal checks_while_reading
        checks_while_reading += reading
        started = checks_while_reading > 40 if workers == 1 else read > 0
        if not requested and started:
            requested.append(time.perf_counter())
        return bool(requested)

    with pytest.raises(CancelledError):
        scan(synthetic, progress=progress, cancel=cancel, workers=workers)
    assert requested and time.perf_counter() - requested[0] < 0.5
    # What was read before the cancel is kept: the next scan starts from it.
    again = scan(synthetic, workers=1)
    assert 0 < again.n_cached < again.n_files


def test_progress_is_throttled_and_ends_complete(synthetic: Path, cache_dir: Path) -> None:
    calls: list[tuple[float, int, int, str]] = []
    t0 = time.perf_counter()
    index = scan(synthetic, progress=lambda d, t, s: calls.append((time.perf_counter(), d, t, s)), workers=1)
    elapsed = time.perf_counter() - t0
    assert calls[-1][1:3] == (index.n_files, index.n_files)
    assert len(calls) <= elapsed * 20 + 3
    done = [d for _, d, t, _ in calls if t]
    assert done == sorted(done)


# -- output --------------------------------------------------------------------------------------------------


def test_text_and_json_output(cache_dir: Path) -> None:
    index = scan([DICOMDIR_TREE, TEST_FILES / "MR_truncated.dcm"])
    text = format_index(index)
    assert text.splitlines()[1].startswith("2 patients, 6 studies, 13 series, 31 images")
    for patient in index.patients:
        assert f"Patient {patient.name}" in text
    assert 'Series #2  CT  "Routine Brain"' in text
    assert "stack axial" in text and "! " in text  # a stack warning
    assert "Skipped 61 entries (50 no pixel data (not an image)" in text
    assert "MR_truncated.dcm: truncated: the file ends inside its pixel data" in text
    assert "  TINY_ALPHA/README: not DICOM" in text

    data = json.loads(json.dumps(index_to_dict(index)))
    assert data["n_files"] == index.n_files and len(data["skipped"]) == 61
    series = [s for p in data["patients"] for st in p["studies"] for s in st["series"]]
    assert len(series) == 13 and sum(s["n_images"] for s in series) == 31
    stack = series[0]["stacks"][0]
    assert set(stack) >= {"uid", "label", "n_slices", "spacing", "warnings", "files"}
    assert all(os.path.isfile(f) for s in series for st in s["stacks"] for f in st["files"])


def test_benchmark_runs_small(tmp_path: Path) -> None:
    result = run_index_benchmark(n_files=120, n_series=3, size=16, workdir=tmp_path, compare=False)
    assert result["n_files"] == 120 and result["n_series"] == 3
    assert result["cold_files_per_s"] > 0 and 0 < result["warm_s"] < result["cold_s"] * 5
    assert os.environ.get("GRU_VIEWER_CACHE_DIR") != str(tmp_path / "cache")


def test_split_series_survives_degenerate_orientation() -> None:
    from viewer.dicom.headers import FrameGeometry, InstanceHeader
    from viewer.dicom.stacks import split_series

    bad = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)  # parallel row and column cosines: no normal
    headers = [
        InstanceHeader(
            path=f"/x/{k}.dcm",
            size=1,
            mtime_ns=0,
            ctime_ns=0,
            sop_instance_uid=f"1.{k}",
            sop_class_uid="",
            transfer_syntax_uid="",
            series_instance_uid="1.2",
            rows=4,
            columns=4,
            instance_number=k,
            frames=(FrameGeometry(position=(0.0, 0.0, float(k)), orientation=bad),),
        )
        for k in (2, 1, 3)
    ]
    stacks = split_series(headers)
    assert len(stacks) == 1
    assert [s.header.instance_number for s in stacks[0].slices] == [1, 2, 3]
    assert any(w.kind == "no_geometry" for w in stacks[0].warnings)


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_file_names_that_are_not_utf8(tmp_path: Path, cache_dir: Path, use_cache: bool) -> None:
    folder = tmp_path / "study"
    paths = make_synthetic_folder(folder, n_files=4, n_series=1, size=16, n_studies=1)
    odd_ct = os.path.join(paths[0].parent, os.fsdecode(b"slice-caf\xe9.dcm"))
    os.rename(paths[0], odd_ct)
    odd_txt = os.path.join(folder, os.fsdecode(b"caf\xe9.txt"))
    Path(odd_txt).write_text("not an image")
    for n_cached in (0, 5) if use_cache else (0,):
        index = scan([str(folder)], use_cache=use_cache)
        assert index.n_files == 5 and index.n_cached == n_cached
        assert [(s.path, s.reason) for s in index.skipped] == [(odd_txt, "not DICOM")]
        (stack,) = index.stacks()
        assert odd_ct in stack.files and stack.n_slices == 4
        text = format_index(index)
        text.encode("utf-8")  # printable under any locale
        assert "caf\\xe9.txt: not DICOM" in text
        json.dumps(index_to_dict(index))


def test_of_duplicate_instances_the_most_complete_copy_is_kept(tmp_path: Path, cache_dir: Path) -> None:
    # pydicom's 15-frame RT dose and its 1-frame cut share one SOP Instance UID; the cut sorts first here.
    shutil.copy2(TEST_FILES / "rtdose_1frame.dcm", tmp_path / "a_dose.dcm")
    shutil.copy2(TEST_FILES / "rtdose.dcm", tmp_path / "b_dose.dcm")
    index = scan(tmp_path)
    (series,) = index.series()
    assert [Path(h.path).name for h in series.headers] == ["b_dose.dcm"] and series.n_images == 15
    (skip,) = index.skipped
    assert skip.path == str(tmp_path / "a_dose.dcm")
    assert (
        skip.reason
        == f"duplicate of {tmp_path / 'b_dose.dcm'} (same SOP Instance UID; that copy has 15 frames, this one 1)"
    )
