"""The reader's measurements in the structured report: each a TID 1410 group with its region in patient
coordinates, its values in UCUM units and, on an acquired slice, that slice's image cited; read back the same
and valid (dciodvfy, where installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from viewer.analysis.model_cache import load_model
from viewer.analysis.session import AnalysisSession
from viewer.dicom.index import scan
from viewer.dicom.readers import load_stack
from viewer.dicom.reformat import PlaneKind, Reformatter
from viewer.dicom.reformat.annotations import (
    ACQUIRED,
    MeasurementSet,
    Tool,
    acquired_grid,
    make_measurement,
    plane_data,
    plane_ref,
)
from viewer.dicom.reformat.slab import Slab, SlabMode
from viewer.report import build_report
from viewer.report.dicom_results import build_result_objects, save_result_objects
from viewer.report.dicom_sr import read_finding
from viewer.synth.dataset import write_phantom_dataset


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory, model_file: Path):
    root = tmp_path_factory.mktemp("sr-measure") / "data"
    write_phantom_dataset(root, studies=1, seed=1, matrix=64)
    volume = load_stack(next(scan([str(root)]).stacks()))
    model, card = load_model(model_file)
    session = AnalysisSession(volume, model, card)
    reformat = Reformatter.of(volume)
    k = volume.n_slices // 2
    axial = acquired_grid(reformat.frame, k)
    depths = reformat.layout.depths(PlaneKind.CORONAL)
    coronal = reformat.grid(PlaneKind.CORONAL, float(depths[len(depths) // 2]))
    items = MeasurementSet()
    for grid, ref, tool, pixels in (
        (axial, plane_ref(axial, ACQUIRED, k), Tool.LINE, [(10, 8), (10, 50)]),
        (axial, plane_ref(axial, ACQUIRED, k), Tool.ELLIPSE, [(20, 15), (40, 48)]),
        (coronal, plane_ref(coronal, "coronal"), Tool.PROBE, [(3, 32)]),
        (
            coronal,
            plane_ref(coronal, "coronal", slab=Slab(SlabMode.MIP, 10.0)),
            Tool.RECTANGLE,
            [(2, 20), (8, 40)],
        ),
    ):
        data = plane_data(reformat, volume.array, ref)
        items.add(make_measurement(tool, ref, grid, data, [grid.patient_of(r, c) for r, c in pixels]))
    report = build_report(volume, session.result, card)
    made = build_result_objects(
        volume, session.result, report, pixel_map=session.pixel_map, measurements=items.items
    )
    return volume, session, report, made, items.items


def test_measurements_read_back_with_their_values_and_units(measured) -> None:
    volume, _, _, made, items = measured
    sr = next(ds for ds in made.datasets if ds.Modality == "SR")
    assert sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    back = {m.number: m for m in read_finding(sr).measurements}
    line, ellipse, probe, _ = items
    k = line.plane.slice_index
    got = back[line.id]
    assert got.tool == Tool.LINE and got.graphic_type == "POLYLINE"
    assert got.values == {"length": pytest.approx(line.values.length_mm, abs=1e-6)}
    assert got.units == {"length": "mm"}
    np.testing.assert_allclose(got.points, np.array(line.points), atol=1e-4)
    assert got.source_sop_uids == (volume.sop_uids[k],)
    got = back[ellipse.id]
    s = ellipse.values.stats
    assert got.tool == Tool.ELLIPSE and got.graphic_type == "ELLIPSE" and got.points.shape == (4, 3)
    assert got.values == pytest.approx(
        {"mean": s.mean, "sd": s.sd, "minimum": s.minimum, "maximum": s.maximum, "area": s.area_mm2}, abs=1e-4
    )
    assert got.units["mean"] == "[hnsf'U]" and got.units["area"] == "mm2"
    major = np.linalg.norm(got.points[0] - got.points[1])
    minor = np.linalg.norm(got.points[2] - got.points[3])
    assert np.pi * major * minor / 4 == pytest.approx(s.area_mm2, rel=0.15)  # the ellipse's own area
    got = back[probe.id]
    assert got.tool == Tool.PROBE and got.graphic_type == "POINT"
    assert got.values == {"value": pytest.approx(probe.values.value, abs=1e-4)}
    assert got.units == {"value": "[hnsf'U]"}
    assert got.source_sop_uids == ()  # a coronal reformat is no stored image


def test_a_slab_measurement_says_its_slab(measured) -> None:
    _, _, _, made, items = measured
    rectangle = items[-1]
    sr = next(ds for ds in made.datasets if ds.Modality == "SR")
    got = read_finding(sr).measurements[-1]
    assert (got.number, got.tool, got.slab) == (rectangle.id, Tool.RECTANGLE, "MIP 10 mm")
    assert got.graphic_type == "POLYGON" and got.points.shape == (5, 3)
    np.testing.assert_allclose(got.points[0], got.points[-1])
    np.testing.assert_allclose(got.points[[0, 2]], np.array(rectangle.points), atol=1e-4)
    assert got.values["area"] == pytest.approx(rectangle.values.stats.area_mm2)
    assert all(m.slab == "" for m in read_finding(sr).measurements[:-1])


def test_the_finding_reads_back_unchanged(measured) -> None:
    _, session, _, made, _ = measured
    finding = read_finding(next(ds for ds in made.datasets if ds.Modality == "SR"))
    assert finding.present is bool(session.result.positive)
    assert finding.probability == pytest.approx(session.result.probability, abs=1e-9)


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) is not installed"
)
def test_the_sr_with_measurements_passes_dciodvfy(measured, tmp_path: Path) -> None:
    _, _, report, made, _ = measured
    paths = save_result_objects(made, tmp_path / "v", report.source_folders)
    sr = next(p for p in paths if p.name.startswith("SR_"))
    run = subprocess.run(["dciodvfy", str(sr)], capture_output=True, text=True, timeout=60)
    lines = [ln for ln in (run.stdout + run.stderr).splitlines() if ln.startswith(("Error", "Warning"))]
    assert lines == []
