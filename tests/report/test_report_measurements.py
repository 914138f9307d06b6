"""Measurements and the view on screen in the report (a page of annotated planes and a table) and the PNG."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader

from viewer.analysis.model_cache import load_model
from viewer.analysis.run import analyze_volume
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
from viewer.report import ReportOptions, build_report
from viewer.report.annotated import COLOUR, export_view_png, planes_to_show, render_plane
from viewer.report.images import render_key_image
from viewer.synth.dataset import write_phantom_dataset


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory, model_file: Path):
    root = tmp_path_factory.mktemp("report-measure") / "data"
    write_phantom_dataset(root, studies=1, seed=0, matrix=64)
    model, card = load_model(model_file)
    volume = load_stack(next(scan([str(root)]).stacks()))
    result = analyze_volume(volume, model, card)
    reformat = Reformatter.of(volume)
    k = volume.n_slices // 2
    slice_ref = plane_ref(acquired_grid(reformat.frame, k), ACQUIRED, k)
    coronal_depth = reformat.layout.depths(PlaneKind.CORONAL)[
        len(reformat.layout.depths(PlaneKind.CORONAL)) // 2
    ]
    coronal_ref = plane_ref(reformat.grid(PlaneKind.CORONAL, coronal_depth), "coronal")
    measurements = MeasurementSet()
    for ref, tool, pixels in (
        (slice_ref, Tool.LINE, [(20, 10), (20, 50)]),
        (slice_ref, Tool.ELLIPSE, [(25, 25), (40, 40)]),
        (coronal_ref, Tool.RECTANGLE, [(5, 20), (15, 40)]),
        (coronal_ref, Tool.PROBE, [(10, 30)]),
    ):
        grid = (
            reformat.grid(PlaneKind.CORONAL, coronal_depth)
            if ref is coronal_ref
            else acquired_grid(reformat.frame, k)
        )
        data = plane_data(reformat, volume.array, ref)
        measurements.add(make_measurement(tool, ref, grid, data, [grid.patient_of(r, c) for r, c in pixels]))
    return volume, result, card, reformat, (slice_ref, coronal_ref), measurements.items


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_report_has_the_view_and_a_table_of_the_measurements(measured, tmp_path: Path) -> None:
    volume, result, card, _, (slice_ref, coronal_ref), items = measured
    options = ReportOptions(views=[slice_ref], measurements=items, layout="1×1 (the acquired slice)")
    report = build_report(volume, result, card, options)
    text = _text(report.pdf)
    assert "View and measurements" in text and "1×1 (the acquired slice)" in text
    for m in items:
        assert m.value_text().split(" · ")[0] in text
    assert slice_ref.title() in text and coronal_ref.title() in text
    assert "Rectangle ROI" in text and "HU probe" in text
    plain = build_report(volume, result, card)
    assert "View and measurements" not in _text(plain.pdf)
    (tmp_path / "report.pdf").write_bytes(report.pdf)


def test_planes_rendered_with_their_measurements(measured) -> None:
    volume, _, _, reformat, (slice_ref, coronal_ref), items = measured
    assert planes_to_show([slice_ref], items) == [slice_ref, coronal_ref]
    figure = render_plane(volume, reformat, coronal_ref, items, width_px=400)
    assert figure.numbers == [3, 4] and figure.letters["top"] == "S"
    ew, eh = figure.extent_mm
    h, w = figure.image.shape[:2]
    assert max(h, w) == 400 and w / h == pytest.approx(ew / eh, rel=0.02)
    # The rectangle's outline is drawn where its corners are: pixel (5, 20) of the plane.
    grid = reformat.grid(PlaneKind.CORONAL, coronal_ref.depth)
    y, x = round((5 + 0.5) * h / grid.height - 0.5), round((20 + 0.5) * w / grid.width - 0.5)
    patch = figure.image[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3].reshape(-1, 3)
    assert any(tuple(px) == COLOUR for px in patch)
    bare = render_plane(volume, reformat, coronal_ref, [], width_px=400)
    assert bare.numbers == [] and not np.any(np.all(bare.image == COLOUR, axis=-1))


def test_png_of_the_view_with_its_measurements(measured, tmp_path: Path) -> None:
    volume, result, _, _, (slice_ref, coronal_ref), items = measured
    k = slice_ref.slice_index
    single = export_view_png(tmp_path / "one.png", volume, result, k, [slice_ref], items, width_px=300)
    image = np.asarray(Image.open(single))
    key = render_key_image(volume, result, k, width_px=300)
    assert image.shape[:2] == key.plain.shape
    assert np.any(np.all(image == COLOUR, axis=-1))  # the measurements are drawn in
    # Without measurements the single view is exactly the key image.
    plain = np.asarray(
        Image.open(
            export_view_png(
                tmp_path / "p.png", volume, result, k, [slice_ref], [], overlay=False, width_px=300
            )
        )
    )
    assert np.array_equal(plain, key.plain)
    axial = plane_ref(Reformatter.of(volume).grid(PlaneKind.AXIAL, slice_ref.depth), "axial")
    three = export_view_png(
        tmp_path / "three.png", volume, result, k, [axial, coronal_ref], items, width_px=300
    )
    image = np.asarray(Image.open(three))
    assert image.shape[1] > 500 and np.any(np.all(image == COLOUR, axis=-1))


def test_a_slab_measurement_is_redrawn_as_its_slab(measured) -> None:
    from viewer.dicom.reformat.slab import Slab, SlabMode

    volume, result, card, reformat, (_, coronal_ref), _ = measured
    grid = reformat.grid(PlaneKind.CORONAL, coronal_ref.depth)
    mip = plane_ref(grid, "coronal", slab=Slab(SlabMode.MIP, 20.0))
    data = plane_data(reformat, volume.array, mip)
    thin = plane_data(reformat, volume.array, coronal_ref)
    assert np.nanmean(data) > np.nanmean(thin)  # the MIP, not the thin plane
    roi = make_measurement(Tool.RECTANGLE, mip, grid, data, [grid.patient_of(5, 20), grid.patient_of(15, 40)])
    assert planes_to_show([coronal_ref], [roi]) == [coronal_ref, mip]  # thin and slab: both shown
    assert (
        render_plane(volume, reformat, mip).image.mean()
        > render_plane(volume, reformat, coronal_ref).image.mean()
    )
    report = build_report(volume, result, card, ReportOptions(views=[mip], measurements=[roi]))
    assert "MIP 20 mm" in _text(report.pdf)


def test_the_png_is_named_after_the_view(measured) -> None:
    from viewer.dicom.reformat.slab import Slab, SlabMode
    from viewer.report.export import ViewState, derived_png

    _, _, _, reformat, (slice_ref, coronal_ref), _ = measured
    pdf = Path("/out/report.pdf")
    state = ViewState(index=4, window=(40.0, 80.0), overlay=False, opacity=0.5)
    assert derived_png(pdf, state).name == "report slice 5 W80 L40.png"
    assert derived_png(pdf, replace(state, views=(slice_ref,))).name == "report slice 5 W80 L40.png"
    single = replace(state, views=(coronal_ref,))
    assert derived_png(pdf, single).name == f"report {coronal_ref.title()} W80 L40.png"
    mip = Slab(SlabMode.MIP, 10.0)
    three = tuple(
        plane_ref(reformat.grid(kind, float(reformat.layout.depths(kind)[0])), kind.value, slab=mip)
        for kind in PlaneKind
    )
    assert derived_png(pdf, replace(state, views=three)).name == (
        "report MPR axial coronal sagittal MIP 10 mm W80 L40.png"
    )
    assert derived_png(pdf, replace(state, views=three[1:2])).name.endswith(" mm MIP 10 mm W80 L40.png")
