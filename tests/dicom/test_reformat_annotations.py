"""Measurements as data: points in patient coordinates on a plane, values against known ones, undo, planes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from viewer.dicom.reformat import PlaneKind, Reformatter
from viewer.dicom.reformat.annotations import (
    ACQUIRED,
    MeasurementSet,
    MeasurementStore,
    Tool,
    acquired_grid,
    make_measurement,
    moved,
    plane_data,
    plane_grid,
    plane_ref,
)
from viewer.synth.marker_volume import SPHERE_HU, Sphere, marker_volume

SPHERE = Sphere((3.0, -2.0, 20.0), 6.0)


@pytest.mark.parametrize("tilt", [0.0, 15.0])
def test_acquired_grid_is_the_slice_itself(tilt: float) -> None:
    volume = marker_volume(12, (20, 24), pixel_spacing=(0.9, 0.7), spacing_z=2.5, tilt_deg=tilt)
    reformat = Reformatter.of(volume)
    grid = acquired_grid(reformat.frame, 5)
    for j, i in ((0, 0), (7, 3), (19, 23)):
        assert grid.patient_of(j, i) == pytest.approx(volume.voxel_to_patient(5, j, i), abs=1e-6)
        assert grid.pixel_of(volume.voxel_to_patient(5, j, i)) == pytest.approx((j, i), abs=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
@pytest.mark.parametrize("tilt", [0.0, 20.0])
def test_sphere_measured_on_an_acquired_slice_and_on_a_coronal_reformat(tilt: float, dtype: type) -> None:
    volume = marker_volume(
        24, 48, pixel_spacing=(0.8, 0.8), spacing_z=2.0, tilt_deg=tilt, spheres=[SPHERE], dtype=dtype
    )
    reformat = Reformatter.of(volume)
    centre = np.asarray(SPHERE.centre)
    # The coronal plane through the centre: a line across the sphere, an ellipse inside, a probe at the centre.
    depth = reformat.layout.snap(PlaneKind.CORONAL, float(centre @ reformat.layout.axes[PlaneKind.CORONAL].w))
    ref = plane_ref(reformat.grid(PlaneKind.CORONAL, depth), PlaneKind.CORONAL.value)
    grid = plane_grid(reformat, ref)
    data = plane_data(reformat, volume.array, ref)
    on_plane = grid.patient_of(*grid.pixel_of(centre))
    left, right = on_plane - [10.0, 0, 0], on_plane + [10.0, 0, 0]
    line = make_measurement(Tool.LINE, ref, grid, data, [left, right])
    assert line.values.length_mm == pytest.approx(20.0, abs=grid.dx / 2)
    assert line.value_text() == "20.0 mm"
    corner_a, corner_b = on_plane - [3.0, 0, 3.0], on_plane + [3.0, 0, 3.0]
    ellipse = make_measurement(Tool.ELLIPSE, ref, grid, data, [corner_a, corner_b])
    stats = ellipse.values.stats
    assert stats is not None and stats.mean == pytest.approx(SPHERE_HU, abs=1.0)
    assert stats.area_mm2 == pytest.approx(math.pi * 9.0, rel=0.02)
    probe = make_measurement(Tool.PROBE, ref, grid, data, [on_plane])
    assert probe.values.value == pytest.approx(SPHERE_HU, abs=1.0)
    angle = make_measurement(Tool.ANGLE, ref, grid, data, [left, on_plane, on_plane + [0, 0, 10.0]])
    assert angle.values.angle_deg == pytest.approx(90.0, abs=0.5)
    # On the nearest acquired slice: a rectangle and a triangle inside the sphere, a rectangle outside it.
    k = reformat.nearest_slice(centre)
    assert k is not None
    sref = plane_ref(acquired_grid(reformat.frame, k), ACQUIRED, k)
    sgrid, sdata = plane_grid(reformat, sref), plane_data(reformat, volume.array, sref)
    c = sgrid.patient_of(*sgrid.pixel_of(centre))
    u, v = sgrid.axes.u, sgrid.axes.v  # the slice's own directions (tilted with the gantry)
    rect = make_measurement(Tool.RECTANGLE, sref, sgrid, sdata, [c - 2 * u - 2 * v, c + 2 * u + 2 * v])
    assert rect.values.stats is not None and rect.values.stats.mean == pytest.approx(SPHERE_HU, abs=1.0)
    assert rect.values.stats.area_mm2 == pytest.approx(16.0, abs=0.01)
    far = make_measurement(Tool.RECTANGLE, sref, sgrid, sdata, [c + 10 * (u + v), c + 14 * (u + v)])
    assert far.values.stats is not None and far.values.stats.maximum == pytest.approx(0.0, abs=1.0)
    polygon = make_measurement(
        Tool.POLYGON, sref, sgrid, sdata, [c - 3 * u - 3 * v, c + 3 * u - 3 * v, c + 3 * v]
    )
    assert polygon.values.stats is not None and polygon.values.stats.area_mm2 == pytest.approx(18.0, rel=1e-3)
    assert "mean 1000 HU" in polygon.value_text()


def test_planes_are_matched_in_the_patient_not_by_pane() -> None:
    volume = marker_volume(10, 16, spacing_z=2.0)
    reformat = Reformatter.of(volume)
    slice_ref = plane_ref(acquired_grid(reformat.frame, 4), ACQUIRED, 4)
    axial_depth = reformat.layout.depths(PlaneKind.AXIAL)[4]
    axial_ref = plane_ref(reformat.grid(PlaneKind.AXIAL, axial_depth), PlaneKind.AXIAL.value)
    other = plane_ref(reformat.grid(PlaneKind.AXIAL, reformat.layout.depths(PlaneKind.AXIAL)[5]), "axial")
    coronal = plane_ref(reformat.grid(PlaneKind.CORONAL, 0.0), PlaneKind.CORONAL.value)
    assert slice_ref.same_plane(axial_ref) and axial_ref.same_plane(slice_ref)
    assert not slice_ref.same_plane(other) and not slice_ref.same_plane(coronal)
    assert slice_ref.title() == "Slice 5" and coronal.title().startswith("Coronal")


def test_set_add_move_delete_undo_and_store_per_series() -> None:
    volume = marker_volume(6, 16)
    volume.array[:] = np.arange(16, dtype=np.float32)[None, None, :]  # value = column
    reformat = Reformatter.of(volume)
    ref = plane_ref(acquired_grid(reformat.frame, 2), ACQUIRED, 2)
    grid, data = plane_grid(reformat, ref), plane_data(reformat, volume.array, ref)
    measurements = MeasurementSet()
    probe = measurements.add(make_measurement(Tool.PROBE, ref, grid, data, [grid.patient_of(3, 5)]))
    line = measurements.add(
        make_measurement(Tool.LINE, ref, grid, data, [grid.patient_of(0, 0), grid.patient_of(0, 4)])
    )
    assert (probe.id, line.id) == (1, 2) and probe.values.value == 5.0
    measurements.update(moved(probe, [grid.patient_of(3, 9)], grid, data))
    assert measurements.get(1).values.value == 9.0  # type: ignore[union-attr]
    assert measurements.remove(2) and len(measurements) == 1
    assert measurements.undo() and measurements.get(2) is not None
    assert measurements.undo() and measurements.get(1).values.value == 5.0  # type: ignore[union-attr]
    assert measurements.undo() and measurements.undo() and len(measurements) == 0
    assert not measurements.undo()
    assert measurements.on_plane(ref) == []
    store = MeasurementStore()
    store.of("a").add(probe)
    assert len(store.of("a")) == 1 and len(store.of("b")) == 0 and "a" in store
    with pytest.raises(ValueError):
        make_measurement(Tool.ANGLE, ref, grid, data, [grid.patient_of(0, 0)])


def test_a_per_slice_map_fills_the_whole_parallel_plane() -> None:
    """A plane parallel to the slices samples one slice's map everywhere, not in its first row only."""
    volume = marker_volume(10, (6, 8))
    reformat = Reformatter.of(volume)
    gradient = np.arange(48, dtype=np.uint8).reshape(6, 8)
    depth = reformat.layout.depths(PlaneKind.AXIAL)[5]
    for normal in ("nearest", "linear"):
        plane = reformat.plane({5: gradient}.get, PlaneKind.AXIAL, depth, normal=normal, fill=0.0)
        assert np.array_equal(plane.data, gradient.astype(np.float32)), normal


@pytest.mark.parametrize(
    ("tilt", "drop"), [(0.0, ()), (15.0, ()), (0.0, (4, 5))], ids=["axial", "tilted", "gapped"]
)
def test_a_plane_moved_within_the_slices_samples_as_a_planned_one(tilt: float, drop: tuple[int, ...]) -> None:
    """Plans derived by a shift (scrolling a sagittal or coronal plane) give exactly what planning gives."""
    from viewer.dicom.reformat.sampler import plan_plane

    volume = marker_volume(14, (20, 24), pixel_spacing=(0.8, 0.7), tilt_deg=tilt, drop=drop, spheres=[SPHERE])
    reformat = Reformatter.of(volume)
    shifted = 0
    for kind in (PlaneKind.CORONAL, PlaneKind.SAGITTAL):
        depths = reformat.layout.depths(kind)
        for depth in [*depths[:4], *depths[-3:], depths[len(depths) // 2]]:
            plan = reformat.plan(kind, float(depth))
            shifted += plan.origin is not None
            fresh = plan_plane(reformat.frame, reformat.grid(kind, float(depth)))
            a, b = plan.sample(volume.array), fresh.sample(volume.array)
            assert np.array_equal(np.isnan(a), np.isnan(b)), (kind, depth)
            assert np.allclose(np.nan_to_num(a), np.nan_to_num(b), atol=1e-3), (kind, depth)
    assert shifted > 0  # the sagittal plane at least moves within the slices
    # A sagittal plane moves along the slices' rows only: its row coordinates and their interpolation terms are
    # the planned plan's own, read again rather than computed per frame.
    plan = reformat.plan(PlaneKind.SAGITTAL, float(reformat.layout.depths(PlaneKind.SAGITTAL)[3]))
    plan.sample(volume.array)
    assert plan.origin is not None and plan.lower.j is plan.origin.lower.j
    assert plan.terms is plan.origin.terms and (plan.lower.j.size == 1 or id(plan.lower.j) in plan.terms)


def test_a_measurement_on_a_slab_keeps_the_slab() -> None:
    from viewer.dicom.reformat.slab import Slab, SlabMode

    volume = marker_volume(24, 48, pixel_spacing=(0.8, 0.8), spacing_z=2.0, spheres=[SPHERE])
    reformat = Reformatter.of(volume)
    centre = np.asarray(SPHERE.centre)
    w = reformat.layout.axes[PlaneKind.CORONAL].w
    depth = reformat.layout.snap(PlaneKind.CORONAL, float(centre @ w) + 9.0)  # past the sphere's 6 mm radius
    grid = reformat.grid(PlaneKind.CORONAL, depth)
    mip = Slab(SlabMode.MIP, 24.0)
    thin_ref, slab_ref = plane_ref(grid, "coronal"), plane_ref(grid, "coronal", slab=mip)
    assert slab_ref.slab == mip and thin_ref.slab is None
    assert slab_ref.title().endswith("· MIP 24 mm") and "MIP" not in thin_ref.title()
    assert plane_ref(acquired_grid(reformat.frame, 3), ACQUIRED, 3, slab=mip).slab is None
    point = grid.patient_of(*grid.pixel_of(centre))
    values = {}
    for ref in (thin_ref, slab_ref):
        values[ref.slab] = make_measurement(
            Tool.PROBE, ref, grid, plane_data(reformat, volume.array, ref), [point]
        )
    assert values[None].values.value < SPHERE_HU - 100  # the thin plane misses the sphere
    assert values[mip].values.value == pytest.approx(SPHERE_HU, abs=1.0)  # its MIP does not
    probe = values[mip]
    slab_data = plane_data(reformat, volume.array, slab_ref)
    assert moved(probe, [point], grid, slab_data, slab_ref).plane == slab_ref
    acquired = make_measurement(Tool.PROBE, plane_ref(grid, ACQUIRED, 0), grid, slab_data, [point])
    assert moved(acquired, [point], grid, slab_data, thin_ref).plane.name == ACQUIRED
