"""Shared test set-up: headless Qt, and a private cache dir so tests never touch the user's index."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from viewer.synth.writer import SeriesMeta

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-long",
        action="store_true",
        default=False,
        help="tests/test_fuzz.py: ten rounds of fresh mutations instead of one (or set GRU_VIEWER_FUZZ=N)",
    )


@pytest.fixture(scope="session")
def small_config():
    """A network small enough for tests that need a real model file, not a trained one."""
    from viewer.model.config import ModelConfig

    return ModelConfig(input_size=32, encoder_channels=(8, 16), hidden_size=8)


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory, small_config) -> Path:
    """Random weights (seed 0) of :func:`small_config`, saved with a card like any model: for the plumbing
    around a model (analysis, GUI, report), not for what a trained one finds."""
    import torch

    from viewer.model.network import SliceGRUNet
    from viewer.model.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "small.safetensors"
    save_weights(
        SliceGRUNet(small_config).eval(),
        path,
        name="test",
        version="0.0.7",
        training_data="synthetic phantoms",
    )
    return path


@pytest.fixture
def gpu_out_of_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The analysis picks CUDA and moving the model there fails with an out-of-memory error, as on a full GPU."""
    import torch

    from viewer.analysis import run as analysis_run

    original_place = analysis_run.place

    def failing_place(model, device):
        if device.type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original_place(model, device)

    monkeypatch.setattr(analysis_run, "pick_device", lambda pref: torch.device("cuda"))
    monkeypatch.setattr(analysis_run, "place", failing_place)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["GRU_VIEWER_CACHE_DIR"] = str(tmp_path_factory.mktemp("gru-viewer-cache"))


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty persistent index for one test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("GRU_VIEWER_CACHE_DIR", str(path))
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_settings_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """GUI settings go to a temporary folder, never the user's (viewer.ui.settings reads this variable)."""
    os.environ["GRU_VIEWER_SETTINGS_DIR"] = str(tmp_path_factory.mktemp("gru-viewer-settings"))


@pytest.fixture(autouse=True, scope="session")
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The de-identification key goes to a temporary folder, never the user's (viewer.report reads this)."""
    os.environ["GRU_VIEWER_DATA_DIR"] = str(tmp_path_factory.mktemp("gru-viewer-data"))


@pytest.fixture(autouse=True)
def _no_qthread_left_running(request: pytest.FixtureRequest):
    """GUI tests (marked ``gui``) fail when a QThread they started is still running at teardown.

    Every ``QThread.start`` is recorded while the test runs (napari's conftest habit). This fixture is set up
    before ``qtbot``, so its check runs after qtbot has closed the test's widgets (which stop their workers).
    """
    if request.node.get_closest_marker("gui") is None:
        yield
        return
    import weakref

    from PySide6.QtCore import QThread

    started: weakref.WeakSet[QThread] = weakref.WeakSet()
    original = QThread.start

    def recording_start(self: QThread, *args: object) -> None:
        started.add(self)
        original(self, *args)

    QThread.start = recording_start  # type: ignore[method-assign]
    try:
        yield
    finally:
        QThread.start = original  # type: ignore[method-assign]
    running = [t for t in list(started) if t.isRunning()]
    for t in running:
        t.requestInterruption()
        t.quit()
        t.wait(5000)
    if running:
        names = ", ".join(t.objectName() or type(t).__name__ for t in running)
        pytest.fail(f"QThread(s) left running after the test: {names}")


def _known_hu(n: int, m: int) -> np.ndarray:
    """HU that a test can predict at any voxel: -1000 + 10·k + j + 2·i (slice k, row j, column i)."""
    k, j, i = np.meshgrid(np.arange(n), np.arange(m), np.arange(m), indexing="ij")
    return (-1000 + 10 * k + j + 2 * i).astype(np.float32)


def _series_meta(patient: str, number: int, description: str) -> SeriesMeta:
    from viewer.synth.writer import SeriesMeta

    return SeriesMeta.invented(
        f"Test^{patient}",
        f"UI-{patient.upper()}",
        description,
        series_number=number,
        birth_date="19600101",
        study_date="20240102",
        study_time="083000",
        study_description=f"UI TEST {patient.upper()}",
        accession_number="UI0001",
    )


def _write_rgb_series(folder: Path, frames: int = 2, size: int = 48) -> None:
    """A small colour Secondary Capture series (RGB, no patient geometry)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    for f in range(frames):
        rgb = np.zeros((size, size, 3), np.uint8)
        rgb[..., 0] = 200  # red
        rgb[size // 2 :, :, 1] = 180  # lower half yellow
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = SecondaryCaptureImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID = "Test^Colour", "UI-COLOUR"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.StudyDate, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "20240103", "OT", 7, f + 1
        ds.SeriesDescription = "Colour capture"
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = rgb.tobytes()
        ds.save_as(folder / f"SC{f + 1:02d}.dcm", enforce_file_format=True)


def _damage(folder: Path) -> None:
    """Re-label every file as RLE Lossless with a fragment no decoder accepts: indexed fine, never displayable."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = RLELossless
        ds.PixelData = encapsulate([b"\x07\x00\x00\x00" + bytes(range(60))])
        ds["PixelData"].VR = "OB"
        ds.save_as(path, enforce_file_format=True)


def _write_two_stack_series(folder: Path) -> None:
    """One series of 8 axial and 4 coronal 32² slices: written as two series, then given one series UID."""
    import pydicom
    from pydicom.uid import generate_uid

    from viewer.synth.writer import axial_geometry, write_ct_series

    axial_meta = _series_meta("multi", 8, "Two planes")
    positions, orientation = axial_geometry(8, 5.0, (1.0, 1.0), 32)
    write_ct_series(
        _known_hu(8, 32),
        folder / "axial",
        positions=positions,
        orientation=orientation,
        pixel_spacing=(1.0, 1.0),
        slice_thickness=5.0,
        meta=axial_meta,
    )
    coronal = np.array([[-16.0, float(y), 16.0] for y in (-6.0, -2.0, 2.0, 6.0)])
    write_ct_series(
        _known_hu(4, 32),
        folder / "coronal",
        positions=coronal,
        orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
        pixel_spacing=(1.0, 1.0),
        slice_thickness=4.0,
        meta=_series_meta("multi", 8, "Two planes"),
    )
    for path in sorted((folder / "coronal").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        uid = generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.StudyInstanceUID = axial_meta.study_uid
        ds.SeriesInstanceUID = axial_meta.series_uid
        ds.FrameOfReferenceUID = axial_meta.frame_of_reference_uid
        ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="session")
def ui_study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder holding what the GUI tests open.

    - ``phantom/``: the demo phantom (128², bleed case);
    - ``axial/``: 12 axial slices of 64² with predictable HU (see ``_known_hu``);
    - ``tilted/``: the same with a 20° gantry tilt;
    - ``slow/``: 40 slices of 256² noise as JPEG 2000 (about 0.3 s to decode: long enough to cancel);
    - ``damaged/``: a series whose pixel data no decoder accepts;
    - ``colour/``: an RGB secondary capture;
    - ``multi/``: one series holding 8 axial and 4 coronal slices (two stacks);
    - ``notes.txt``: not DICOM (an import-log entry).
    """
    from pydicom.uid import JPEG2000Lossless

    from viewer.synth.dataset import write_phantom_dataset
    from viewer.synth.writer import axial_geometry, write_ct_series

    root = Path(tmp_path_factory.mktemp("ui-study"))
    write_phantom_dataset(root / "phantom", studies=1, seed=0, matrix=128)
    for name, tilt, number in (("axial", 0.0, 3), ("tilted", 20.0, 4)):
        positions, orientation = axial_geometry(12, 5.0, (0.5, 0.5), 64, tilt_deg=tilt)
        write_ct_series(
            _known_hu(12, 64),
            root / name,
            positions=positions,
            orientation=orientation,
            pixel_spacing=(0.5, 0.5),
            slice_thickness=5.0,
            meta=_series_meta(name, number, f"{name.title()} known HU"),
        )
    positions, orientation = axial_geometry(40, 5.0, (0.8, 0.8), 256)
    noise = np.random.default_rng(1).integers(-1000, 1000, (40, 256, 256)).astype(np.float32)
    write_ct_series(
        noise,
        root / "slow",
        positions=positions,
        orientation=orientation,
        pixel_spacing=(0.8, 0.8),
        slice_thickness=5.0,
        meta=_series_meta("slow", 5, "Slow JPEG 2000"),
        transfer_syntax=JPEG2000Lossless,
    )
    positions, orientation = axial_geometry(6, 5.0, (0.5, 0.5), 64)
    write_ct_series(
        _known_hu(6, 64),
        root / "damaged",
        positions=positions,
        orientation=orientation,
        pixel_spacing=(0.5, 0.5),
        slice_thickness=5.0,
        meta=_series_meta("damaged", 6, "Damaged series"),
    )
    _damage(root / "damaged")
    _write_rgb_series(root / "colour")
    _write_two_stack_series(root / "multi")
    (root / "notes.txt").write_text("not a DICOM file\n")
    return root
