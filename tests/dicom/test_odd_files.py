"""Real odd files: every file of pydicom's test data and of pydicom-data is indexed and loaded, or skipped (or
refused) with a clear reason; nothing raises, nothing reaches stderr.

pydicom-data (``pip install pydicom-data``, in the test extras) installs its files as the package ``data_store``;
its tests are skipped, saying so, where it is missing.
"""

from __future__ import annotations

import importlib.util
import traceback
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from viewer.dicom.index import scan
from viewer.dicom.readers import load_stack
from viewer.errors import ViewerError

# The files a loader must refuse, and the words of their reason: they are damaged on purpose.
REFUSED = {
    "JPEG2000-embedded-sequence-delimiter.dcm": "damaged JPEG 2000 codestream",
}
# Skip reasons that quote an exception are not clear to a reader: none is expected.
UNCLEAR = ("unreadable header (",)


def _pydicom_data() -> Path | None:
    spec = importlib.util.find_spec("data_store")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "data"


def _folder(source: str) -> Path:
    if source == "pydicom":
        return Path(get_testdata_file("CT_small.dcm")).parent
    folder = _pydicom_data()
    if folder is None:
        pytest.skip("pydicom-data is not installed (pip install pydicom-data)")
    return folder


def _data_file(name: str) -> Path:
    return _folder("pydicom-data") / name


@pytest.mark.timeout(300)
@pytest.mark.parametrize("source", ["pydicom", "pydicom-data"])
def test_every_file_is_indexed_and_loaded_or_skipped_with_a_reason(
    source: str, capfd: pytest.CaptureFixture[str]
) -> None:
    problems: list[str] = []
    loaded = skipped = 0
    files = sorted(p for p in _folder(source).iterdir() if p.is_file())
    for path in files:
        try:
            index = scan([str(path)], use_cache=False)
            for entry in index.skipped:
                skipped += 1
                if not entry.reason.strip() or entry.reason.startswith(UNCLEAR):
                    problems.append(f"{path.name}: skipped for {entry.reason!r}")
            for stack in index.stacks():
                try:
                    volume = load_stack(stack, workers=1)
                except ViewerError as exc:
                    if REFUSED.get(path.name, "\0") not in exc.why:
                        problems.append(f"{path.name}: refused: {exc.why}")
                    continue
                loaded += 1
                if path.name in REFUSED:
                    problems.append(f"{path.name}: loaded, but it is damaged")
                if not np.isfinite(volume.array).all() and not volume.is_colour:
                    problems.append(f"{path.name}: non-finite voxels")
        except Exception:
            problems.append(f"{path.name}: {traceback.format_exc(limit=-3)}")
    captured = capfd.readouterr()
    assert not problems, "\n".join(problems)
    assert captured.err == "" and captured.out == ""
    # What the files hold (pydicom 3.0, pydicom-data 1.0): most are images; pydicom's own also holds reports,
    # plans, structure sets and non-DICOM files, each skipped.
    least_loaded, least_skipped = {"pydicom": (55, 20), "pydicom-data": (60, 0)}[source]
    assert loaded >= least_loaded and skipped >= least_skipped, (loaded, skipped)


def test_a_palette_colour_file_without_preamble_or_file_meta_loads() -> None:
    """OT-PAL-8-face.dcm starts with its dataset (implicit VR): pydicom's decoders need a transfer syntax, which
    the loader gives them from how the file was read."""
    from pydicom.pixels.processing import apply_color_lut

    path = _data_file("OT-PAL-8-face.dcm")
    assert path.read_bytes()[128:132] != b"DICM"
    index = scan([str(path)], use_cache=False)
    assert not index.skipped
    volume = load_stack(next(index.stacks()))
    ds = pydicom.dcmread(path, force=True)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    expected = apply_color_lut(ds.pixel_array, ds)
    expected = (expected >> 8).astype(np.uint8) if expected.dtype == np.uint16 else expected
    assert volume.is_colour and volume.array.shape == (1, 480, 640, 3)
    np.testing.assert_array_equal(volume.array[0], expected)


def test_an_enhanced_ct_supplemental_map_is_not_assessed(tmp_path: Path) -> None:
    """eCT_Supplemental.dcm: two frames of an enhanced CT, a skull-stripped brain map without bone. It loads in
    HU, and the analysis withholds the finding: 20 mm of coverage, and no values of bone."""
    from viewer.analysis.model_cache import load_model
    from viewer.analysis.run import AnalysisOptions, analyze_volume
    from viewer.model.config import ModelConfig
    from viewer.model.network import SliceGRUNet
    from viewer.model.weights import save_weights

    stacks = list(scan([str(_data_file("eCT_Supplemental.dcm"))], use_cache=False).stacks())
    assert len(stacks) == 1
    volume = load_stack(stacks[0])
    assert volume.array.shape == (2, 512, 512) and volume.units == "HU" and volume.modality == "CT"
    weights = tmp_path / "tiny.safetensors"
    net = SliceGRUNet(ModelConfig(input_size=32, encoder_channels=(8, 16), hidden_size=8)).eval()
    save_weights(net, weights, name="tiny", version="0")
    model, card = load_model(weights)
    result = analyze_volume(volume, model, card, options=AnalysisOptions(device="cpu", key_slices=1))
    assert not result.assessed
    assert {w.code for w in result.warnings if w.disqualifying} == {"coverage", "hu_range"}
    assert result.reasons[0].startswith("The series covers 20 mm in 2 slices")


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1"])
def test_a_file_cut_short_after_indexing_is_skipped_saying_so(tmp_path: Path, syntax: str) -> None:
    """pydicom reads an encapsulated file cut short as an empty dataset; the reason must still be the truncation
    (it was "image is 0×0"), found by reading the changed file's header again as the index does."""
    from viewer.synth.simple import write_bench_series

    paths = write_bench_series(tmp_path / "s", 6, 64, syntax)
    (stack,) = scan([str(tmp_path / "s")], workers=1, use_cache=False).stacks()
    paths[3].write_bytes(paths[3].read_bytes()[:-100])
    volume = load_stack(stack)
    assert [Path(p).name for p, _ in volume.skipped] == [paths[3].name]
    why = volume.skipped[0][1]
    assert why.startswith("changed since it was indexed: truncated: the file ends inside its"), why
