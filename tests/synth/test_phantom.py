"""Phantom head CT studies and the DICOM writer: what is written reads back as declared."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from viewer.errors import CancelledError
from viewer.synth.bleeds import KINDS
from viewer.synth.dataset import write_phantom_dataset
from viewer.synth.labels import load_labels
from viewer.synth.study import PhantomStudy, generate_study
from viewer.synth.writer import (
    SeriesMeta,
    axial_geometry,
    encoder_available,
    sop_instance_uid,
    write_ct_series,
)

MATRIX = 96


def _meta(series_uid: str = "1.2.826.0.1.3680043.8.498.1") -> SeriesMeta:
    return SeriesMeta(
        patient_name="PHANTOM^TEST",
        patient_id="PHT-1",
        birth_date="19700101",
        sex="F",
        study_uid="1.2.826.0.1.3680043.8.498.2",
        study_date="20240102",
        study_time="101500",
        study_description="CT HEAD WO CONTRAST",
        accession_number="A1",
        series_uid=series_uid,
        series_number=2,
        series_description="HEAD 5mm AXIAL",
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.3",
    )


def _read_hu(path: Path) -> tuple[pydicom.Dataset, np.ndarray]:
    ds = pydicom.dcmread(path)
    return ds, ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


@pytest.fixture(scope="module")
def study() -> PhantomStudy:
    return generate_study(np.random.default_rng(11), matrix=MATRIX, n_slices=30, bleed=True)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantoms")
    write_phantom_dataset(out, studies=4, seed=5, matrix=MATRIX)
    return out


# -- geometry helpers -------------------------------------------------------------------------------------------


def test_axial_geometry_plain_stack_steps_along_normal() -> None:
    pos, ori = axial_geometry(5, 5.0, (0.5, 0.5), 64)
    normal = np.cross(ori[:3], ori[3:])
    assert np.allclose(normal, [0, 0, 1])
    assert np.allclose(np.diff(pos @ normal), 5.0)
    # Image centres lie on the z axis.
    centre = pos[0] + np.asarray(ori[:3]) * 31.5 * 0.5 + np.asarray(ori[3:]) * 31.5 * 0.5
    assert np.allclose(centre, [0, 0, 0])


def test_axial_geometry_tilt_steps_off_the_normal() -> None:
    tilt = 20.0
    pos, ori = axial_geometry(6, 5.0, (0.5, 0.5), (64, 48), tilt_deg=tilt)
    normal = np.cross(ori[:3], ori[3:])
    step = np.diff(pos, axis=0)
    assert np.allclose(step, [0, 0, 5.0])  # the table moves along patient z
    angle = math.degrees(math.acos(float(step[0] @ normal) / 5.0))
    assert angle == pytest.approx(tilt, abs=1e-6)
    assert np.allclose(np.diff(pos @ normal), 5.0 * math.cos(math.radians(tilt)))


def test_axial_geometry_feet_first_reverses_positions() -> None:
    head, _ = axial_geometry(7, 2.5, (0.7, 0.7), 32, origin=(-10.0, -10.0, 40.0))
    feet, _ = axial_geometry(7, 2.5, (0.7, 0.7), 32, origin=(-10.0, -10.0, 40.0), feet_first=True)
    assert np.allclose(feet, head[::-1])
    assert feet[0, 2] > feet[-1, 2]
    assert head[0, 2] == pytest.approx(40.0)


# -- writer ------------------------------------------------------------------------------------------------------


def test_written_series_reads_back_as_declared(tmp_path: Path, study: PhantomStudy) -> None:
    dz, dy, dx = study.spacing
    pos, ori = axial_geometry(study.n_slices, dz, (dy, dx), MATRIX, tilt_deg=12.0, feet_first=True)
    meta = _meta()
    paths = write_ct_series(
        study.hu,
        tmp_path,
        positions=pos,
        orientation=ori,
        pixel_spacing=(dy, dx),
        slice_thickness=dz,
        meta=meta,
    )
    assert [p.name for p in paths[:2]] == ["IM0001.dcm", "IM0002.dcm"]
    uids = set()
    for k in (0, study.n_slices // 2, study.n_slices - 1):
        ds, hu = _read_hu(paths[k])
        assert ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
        assert ds.SOPClassUID == CTImageStorage
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert (
            ds.file_meta.MediaStorageSOPInstanceUID
            == ds.SOPInstanceUID
            == sop_instance_uid(meta.series_uid, k)
        )
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID) == (
            meta.study_uid,
            meta.series_uid,
            meta.frame_of_reference_uid,
        )
        assert ds.Modality == "CT" and list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert ds.InstanceNumber == k + 1
        assert ds.BitsAllocated == 16 and ds.BitsStored in (12, 16) and ds.PixelRepresentation == 0
        assert np.allclose([float(v) for v in ds.ImagePositionPatient], pos[k], atol=1e-3)
        assert np.allclose([float(v) for v in ds.ImageOrientationPatient], ori, atol=1e-9)
        assert float(ds.GantryDetectorTilt) == pytest.approx(12.0)
        assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40.0, 80.0)
        assert np.abs(hu - study.hu[k]).max() <= 0.5 + 1e-6
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == 3


@pytest.mark.parametrize(
    "syntax", [RLELossless, JPEG2000Lossless, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]
)
def test_other_transfer_syntaxes_decode_to_the_same_pixels(
    tmp_path: Path, study: PhantomStudy, syntax: str
) -> None:
    if not encoder_available(syntax):
        pytest.skip(f"no encoder for {syntax} here")
    hu = study.hu[10:13]
    dz, dy, dx = study.spacing
    pos, ori = axial_geometry(3, dz, (dy, dx), MATRIX)
    kwargs = dict(positions=pos, orientation=ori, pixel_spacing=(dy, dx), slice_thickness=dz, meta=_meta())
    plain = write_ct_series(hu, tmp_path / "plain", **kwargs)
    packed = write_ct_series(hu, tmp_path / "packed", transfer_syntax=syntax, **kwargs)
    for a, b in zip(plain, packed, strict=True):
        da, db = pydicom.dcmread(a), pydicom.dcmread(b)
        assert db.file_meta.TransferSyntaxUID == syntax
        assert db.SOPInstanceUID == da.SOPInstanceUID
        assert np.array_equal(da.pixel_array, db.pixel_array)


def test_writer_keeps_files_inside_the_folder(tmp_path: Path, study: PhantomStudy) -> None:
    pos, ori = axial_geometry(1, 5.0, (1.0, 1.0), MATRIX)
    with pytest.raises(ValueError, match="plain names"):
        write_ct_series(
            study.hu[:1],
            tmp_path / "series",
            positions=pos,
            orientation=ori,
            pixel_spacing=(1.0, 1.0),
            slice_thickness=5.0,
            meta=_meta(),
            file_names=["../escape.dcm"],
        )
    assert not (tmp_path / "escape.dcm").exists()


def test_monochrome1_stores_inverted_values_with_the_same_hu(tmp_path: Path, study: PhantomStudy) -> None:
    hu = study.hu[12:14]
    dz, dy, dx = study.spacing
    pos, ori = axial_geometry(2, dz, (dy, dx), MATRIX)
    kwargs = dict(positions=pos, orientation=ori, pixel_spacing=(dy, dx), slice_thickness=dz, meta=_meta())
    m2 = write_ct_series(hu, tmp_path / "m2", **kwargs)
    m1 = write_ct_series(hu, tmp_path / "m1", photometric="MONOCHROME1", **kwargs)
    d2, hu2 = _read_hu(m2[0])
    d1, hu1 = _read_hu(m1[0])
    assert d1.PhotometricInterpretation == "MONOCHROME1"
    top = (1 << d1.BitsStored) - 1
    assert np.array_equal(d1.pixel_array.astype(int), top - d2.pixel_array.astype(int))
    assert np.allclose(hu1, hu2)


# -- generated studies -------------------------------------------------------------------------------------------


def test_study_has_head_ct_values(study: PhantomStudy) -> None:
    hu, mask = study.hu, study.mask
    assert hu.dtype == np.float32 and hu.shape == (30, MATRIX, MATRIX)
    assert study.spacing[0] == 5.0 and 0.3 < study.spacing[1] == study.spacing[2] < 3.0
    assert abs(float(np.median(hu[:, :4, :4])) + 1000.0) < 15.0  # air in the corners
    assert hu.max() > 1000.0  # skull
    mid = hu[15, MATRIX // 2 - 8 : MATRIX // 2 + 8, MATRIX // 2 - 8 : MATRIX // 2 + 8]
    assert -5.0 < float(np.median(mid)) < 45.0  # brain or CSF in the middle of the head
    assert study.label == 1 and study.kind != "none" and mask.any()
    assert all(k in KINDS for k in study.kind.split("+"))
    assert np.array_equal(study.slice_labels, mask.any(axis=(1, 2)).astype(np.uint8))
    bleed_hu = float(np.median(hu[mask]))
    assert bleed_hu > 40.0  # hyperdense against brain (white ~28, grey ~38)
    for les in study.lesions:
        assert 15.0 <= les.contrast_hu <= 50.0
        assert study.slice_labels[les.first_slice] == study.slice_labels[les.last_slice] == 1


def test_no_bleed_study_has_empty_truth() -> None:
    s = generate_study(np.random.default_rng(3), matrix=64, n_slices=28, bleed=False)
    assert s.label == 0 and s.kind == "none" and not s.mask.any() and not s.slice_labels.any()
    assert s.lesions == [] and s.contrast_hu is None


def test_generation_is_deterministic() -> None:
    a = generate_study(np.random.default_rng(7), matrix=64, n_slices=28)
    b = generate_study(np.random.default_rng(7), matrix=64, n_slices=28)
    c = generate_study(np.random.default_rng(8), matrix=64, n_slices=28)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.mask, b.mask) and a.kind == b.kind
    assert not np.array_equal(a.hu, c.hu)


# -- datasets on disk --------------------------------------------------------------------------------------------


def test_dataset_layout_labels_and_masks_agree(dataset: Path) -> None:
    manifest = load_labels(dataset)
    assert manifest.seed == 5 and manifest.matrix == MATRIX and len(manifest.studies) == 4
    assert sorted(s.label for s in manifest.studies) == [0, 0, 1, 1]
    assert manifest.studies[0].label == 1  # the demo study has a bleed
    assert len({s.patient_id for s in manifest.studies}) == 4
    for s in manifest.studies:
        assert s.series_dir.parent.parent == dataset.resolve()
        assert s.series_dir.parent.name == s.patient_id and s.series_dir.name == "2_HEAD_5mm_AXIAL"
        files = sorted(s.series_dir.glob("IM*.dcm"))
        assert len(files) == len(s.sop_uids) and 28 <= len(files) <= 40
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        assert {h.StudyInstanceUID for h in headers} == {s.study_uid}
        assert {h.SeriesInstanceUID for h in headers} == {s.series_uid}
        assert len({h.FrameOfReferenceUID for h in headers}) == 1
        assert all(str(h.PatientName).startswith("PHANTOM^") for h in headers)
        z = [float(h.ImagePositionPatient[2]) for h in headers]
        by_z = [str(h.SOPInstanceUID) for _, h in sorted(zip(z, headers, strict=True), key=lambda t: t[0])]
        assert by_z == s.sop_uids  # ascending along the normal (+z for these axial series)
        assert np.allclose(np.diff(sorted(z)), 5.0)

        with np.load(s.mask_path) as data:
            assert list(data["sop_uids"]) == s.sop_uids
            mask = data["mask"]
        assert mask.dtype == bool and mask.shape == (len(files), MATRIX, MATRIX)
        assert np.array_equal(s.slice_labels, mask.any(axis=(1, 2)).astype(np.uint8))
        assert s.slice_labels_by_sop == {u: int(v) for u, v in zip(s.sop_uids, s.slice_labels, strict=True)}
        assert s.label == int(mask.any()) and (s.kind == "none") == (s.label == 0)
        if s.label:
            first = min(les.first_slice for les in s.lesions)
            last = max(les.last_slice for les in s.lesions)
            assert np.flatnonzero(s.slice_labels).tolist()[0] == first
            assert np.flatnonzero(s.slice_labels).tolist()[-1] == last
            _, hu = _read_hu(s.series_dir / f"IM{first + 1:04d}.dcm")  # IM0001 is the most inferior slice
            assert float(np.median(hu[mask[first]])) > 35.0


def test_demo_study_has_a_clear_bleed(dataset: Path) -> None:
    demo = load_labels(dataset / "labels.json").studies[0]
    assert demo.kind == "intraparenchymal"
    assert demo.contrast_hu is not None and demo.contrast_hu >= 40.0
    assert demo.size_mm is not None and demo.size_mm >= 20.0
    assert demo.noise_hu <= 5.0


def test_dataset_is_deterministic_and_prefix_stable(dataset: Path, tmp_path: Path) -> None:
    again = write_phantom_dataset(tmp_path / "again", studies=2, seed=5, matrix=MATRIX)
    first = load_labels(dataset)
    for a, b in zip(first.studies[:2], again.studies, strict=True):
        assert (a.patient_id, a.study_uid, a.series_uid, a.sop_uids) == (
            b.patient_id,
            b.study_uid,
            b.series_uid,
            b.sop_uids,
        )
        assert np.array_equal(a.slice_labels, b.slice_labels)
        fa, fb = sorted(a.series_dir.glob("*.dcm")), sorted(b.series_dir.glob("*.dcm"))
        assert fa[3].read_bytes() == fb[3].read_bytes()
    other = write_phantom_dataset(tmp_path / "other", studies=1, seed=6, matrix=64)
    assert other.studies[0].study_uid != first.studies[0].study_uid


def test_progress_and_cancel(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    with pytest.raises(CancelledError):
        write_phantom_dataset(
            tmp_path,
            studies=3,
            seed=1,
            matrix=48,
            progress=lambda done, total, text: calls.append((done, total)),
            cancel=lambda: len(calls) >= 1,
        )
    assert calls == [(0, 3)]
    partial = load_labels(tmp_path)
    assert len(partial.studies) == 1 and partial.studies[0].mask_path.exists()


def test_dataset_study_is_the_written_study(tmp_path):
    from viewer.synth.dataset import dataset_study

    manifest = write_phantom_dataset(tmp_path / "set", studies=3, seed=4, matrix=64)
    for index in (0, 2):
        study, meta = dataset_study(4, index, matrix=64)
        written = manifest.studies[index]
        assert meta.series_uid == written.series_uid
        assert study.label == written.label
        assert np.array_equal(study.slice_labels, written.slice_labels)


def test_several_workers_write_the_same_data_set_byte_for_byte(tmp_path: Path) -> None:
    """Each study depends only on the seed and its index, so a data set made by several processes is the one a
    single process makes: every file (DICOM, masks, labels.json) identical."""
    import hashlib

    def digests(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    one = write_phantom_dataset(tmp_path / "one", studies=5, seed=11, matrix=48, family="wide")
    three = write_phantom_dataset(tmp_path / "three", studies=5, seed=11, matrix=48, family="wide", workers=3)
    assert [s.series_uid for s in one.studies] == [s.series_uid for s in three.studies]
    assert digests(tmp_path / "one") == digests(tmp_path / "three") and len(digests(tmp_path / "one")) > 10
