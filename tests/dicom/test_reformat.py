"""Reformats in true geometry: a sphere at known patient coordinates lands at the same place in every plane, for
axial, tilted, feet-first and gapped stacks; aspect, letters, gaps, slabs, overlays and the memory bound."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from viewer.dicom.reformat import PlaneKind, Reformatter, Slab, SlabMode
from viewer.synth.marker_volume import SPHERE_HU, Sphere, marker_volume

SPHERE = Sphere((10.0, -8.0, 30.0), 6.0)
GEOMETRIES = {
    "axial": {},
    "tilted": {"tilt_deg": 20.0},
    "feet_first": {"feet_first": True},
    "gapped": {"drop": (3, 4, 5)},
    "nonuniform": {
        "steps": [0, 2, 4, 6, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35, 38, 41, 44, 47, 50, 53, 56, 59]
    },
}


def _volume(name: str, dtype: type = np.float32):
    return marker_volume(
        22, 48, pixel_spacing=(0.9, 0.8), spacing_z=3.0, spheres=[SPHERE], dtype=dtype, **GEOMETRIES[name]
    )


def _centroid(image) -> tuple[float, float]:
    """View (x, y) of the bright pixels' centre."""
    rows, cols = np.nonzero(np.nan_to_num(image.data) > SPHERE_HU / 2)
    assert len(rows), "the sphere is not in the plane"
    return image.grid.x0 + cols.mean() * image.grid.dx, image.grid.y0 + rows.mean() * image.grid.dy


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_sphere_lands_at_its_patient_coordinates_in_all_three_planes(name: str) -> None:
    volume = _volume(name)
    reformat = Reformatter.of(volume)
    centre = np.asarray(SPHERE.centre)
    for kind in PlaneKind:
        axes = reformat.layout.axes[kind]
        x, y, depth = axes.to_view(centre)
        image = reformat.plane(volume.array, kind, reformat.layout.snap(kind, depth))
        cx, cy = _centroid(image)
        # Within a pixel (the sphere is drawn at voxel centres, so its centroid moves by up to half a voxel).
        assert abs(cx - x) <= image.grid.dx, (kind, cx, x)
        assert abs(cy - y) <= image.grid.dy, (kind, cy, y)
        # The crosshair readout: the pixel the centre maps to holds the sphere, and the point maps back.
        row, col = image.grid.pixel_of(centre)
        assert image.data[round(row), round(col)] > SPHERE_HU / 2
        back = image.grid.patient_of(row, col)
        np.testing.assert_allclose(back @ axes.u, x, atol=1e-9)
        np.testing.assert_allclose(back @ axes.v, y, atol=1e-9)
    assert reformat.value_at(volume.array, centre) == pytest.approx(SPHERE_HU)
    assert reformat.value_at(volume.array, centre + np.array([0.0, 0.0, 12.0])) == pytest.approx(0.0)


def test_tilted_stack_is_resampled_into_true_planes_not_index_planes() -> None:
    # Two spheres at the same height, one anterior, one posterior: a true axial plane holds both; the acquired
    # slice through one misses the other by 30 mm · tan(20°) ≈ 11 mm.
    front, back = Sphere((0.0, -15.0, 30.0), 4.0), Sphere((0.0, 15.0, 30.0), 4.0)
    volume = marker_volume(
        30, 48, pixel_spacing=(0.9, 0.8), spacing_z=2.0, tilt_deg=20.0, spheres=[front, back]
    )
    reformat = Reformatter.of(volume)
    axial = reformat.plane(volume.array, PlaneKind.AXIAL, 30.0)
    bright = np.nan_to_num(axial.data) > SPHERE_HU / 2
    ys = axial.grid.y0 + axial.grid.dy * np.nonzero(bright)[0]
    assert (ys < 0).sum() == pytest.approx((ys > 0).sum(), rel=0.3) and (ys < 0).sum() > 10
    k = reformat.nearest_slice(np.asarray(front.centre))
    assert k is not None
    rows = np.nonzero(volume.array[k] > SPHERE_HU / 2)[0]
    anterior = volume.positions[k][1] + rows * volume.spacing[1] * np.cos(np.radians(20.0)) < 0
    assert anterior.all() and len(rows) > 10


def test_pixel_aspect_and_extent_are_true_millimetres() -> None:
    volume = marker_volume(20, 40, pixel_spacing=(0.5, 0.5), spacing_z=5.0, spheres=[Sphere((0, 0, 50), 15)])
    reformat = Reformatter.of(volume)
    coronal = reformat.plane(volume.array, PlaneKind.CORONAL, reformat.layout.snap(PlaneKind.CORONAL, 0.0))
    left, top, width, height = coronal.grid.rect()
    assert width == pytest.approx(40 * 0.5)
    assert height == pytest.approx(20 * 5.0, abs=coronal.grid.dy)  # 5 mm slices are 5 mm tall
    assert coronal.grid.dx == pytest.approx(coronal.grid.dy)  # square pixels: the rect alone gives the aspect
    # The sphere is as tall as it is wide (mm), though its slices are ten times thicker than its pixels.
    rows, cols = np.nonzero(np.nan_to_num(coronal.data) > SPHERE_HU / 2)
    tall = (rows.max() - rows.min() + 1) * coronal.grid.dy
    wide = (cols.max() - cols.min() + 1) * coronal.grid.dx
    assert tall == pytest.approx(wide, abs=5.0)


def test_orientation_letters_of_each_plane() -> None:
    reformat = Reformatter.of(_volume("axial"))
    letters = {kind: reformat.layout.axes[kind].edge_letters() for kind in PlaneKind}
    assert letters[PlaneKind.AXIAL] == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert letters[PlaneKind.CORONAL] == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert letters[PlaneKind.SAGITTAL] == {"left": "A", "right": "P", "top": "S", "bottom": "I"}


def test_a_gap_stays_a_gap_or_is_interpolated_and_says_so() -> None:
    volume = marker_volume(12, 24, spacing_z=2.0, drop=(5, 6, 7), dtype=np.int16)
    volume.array[:] = 100
    for mode, blank in (("blank", True), ("interpolate", False)):
        reformat = Reformatter(Reformatter.of(volume).frame, gaps=mode)
        image = reformat.plane(volume.array, PlaneKind.CORONAL, reformat.layout.snap(PlaneKind.CORONAL, 0.0))
        ys = image.grid.y0 + image.grid.dy * np.arange(image.grid.height)  # y = -z
        in_gap = (ys < -(8.0 + 1.0 + 0.1)) & (
            ys > -(16.0 - 1.0 - 0.1)
        )  # slices at z 8 and 16, half spacing 1
        assert in_gap.any()
        assert np.isnan(image.data[in_gap]).all() == blank
        assert (image.data[~in_gap] == 100).all()
        assert image.notes == [f"gap between slices {'left blank' if blank else 'interpolated'}"]
        # The rows keep their true heights: the image spans the stack's 24 mm (plus half a slice at each end).
        assert image.grid.height * image.grid.dy == pytest.approx(24.0, abs=image.grid.dy)


def test_nonuniform_steps_put_each_slice_at_its_true_position() -> None:
    steps = [0.0, 1.0, 2.0, 3.0, 6.0, 9.0, 12.0, 15.0]
    volume = marker_volume(8, 16, spacing_z=1.0, steps=steps)
    volume.array[5] = 500.0  # the slice at z = 9 mm
    reformat = Reformatter.of(volume)
    image = reformat.plane(volume.array, PlaneKind.SAGITTAL, reformat.layout.snap(PlaneKind.SAGITTAL, 0.0))
    profile = np.nanmax(image.data, axis=1)
    peak_y = image.grid.y0 + image.grid.dy * np.argmax(profile)
    assert peak_y == pytest.approx(-9.0, abs=image.grid.dy)
    bands = reformat.slice_bands(PlaneKind.SAGITTAL)
    assert bands is not None and bands.axis == "y"
    assert bands.slice_at(-9.0) == 5 and bands.slice_at(-2.0) == 2
    assert reformat.slice_bands(PlaneKind.AXIAL) is None


def test_slabs_combine_the_planes_within_their_thickness() -> None:
    volume = marker_volume(10, 16, spacing_z=2.0)
    for k in range(10):
        volume.array[k] = 10.0 * k
    volume.array[4, 8, 8] = 900.0
    volume.array[6, 3, 3] = -900.0
    reformat = Reformatter.of(volume)
    depth = float(volume.positions[5][2])
    thin = reformat.plane(volume.array, PlaneKind.AXIAL, depth)
    mip = reformat.plane(volume.array, PlaneKind.AXIAL, depth, slab=Slab(SlabMode.MIP, 4.0))
    minip = reformat.plane(volume.array, PlaneKind.AXIAL, depth, slab=Slab(SlabMode.MINIP, 4.0))
    mean = reformat.plane(volume.array, PlaneKind.AXIAL, depth, slab=Slab(SlabMode.MEAN, 4.0))
    assert np.all(thin.data == 50.0)
    assert mip.data.max() == 900.0 and np.median(mip.data) == 60.0
    assert minip.data.min() == -900.0 and np.median(minip.data) == 40.0
    assert np.median(mean.data) == pytest.approx(50.0)
    assert mip.notes[-1] == "MIP 4 mm"
    wide = reformat.plane(volume.array, PlaneKind.CORONAL, reformat.layout.snap(PlaneKind.CORONAL, 0.0))
    slab = reformat.plane(
        volume.array,
        PlaneKind.CORONAL,
        reformat.layout.snap(PlaneKind.CORONAL, 0.0),
        slab=Slab(SlabMode.MIP, 6),
    )
    assert slab.data.shape == wide.data.shape


@pytest.mark.parametrize("kind", [PlaneKind.CORONAL, PlaneKind.SAGITTAL])  # one slice per row; per pixel
def test_overlay_reformats_with_the_image_per_acquired_slice(kind: PlaneKind) -> None:
    volume = marker_volume(10, 16, spacing_z=4.0, tilt_deg=15.0, dtype=np.int16)
    for k in range(10):
        volume.array[k] = k
    maps = {3: np.full((16, 16), 200, np.uint8), 7: np.full((16, 16), 50, np.uint8)}
    reformat = Reformatter.of(volume)
    depth = reformat.layout.snap(kind, 0.0)
    image = reformat.plane(volume.array, kind, depth)
    overlay = reformat.plane(maps.get, kind, depth, normal="nearest", fill=0.0)
    assert overlay.grid == image.grid
    assert set(np.unique(overlay.data)) == {0.0, 50.0, 200.0}
    # The map of slice 3 lies exactly where the image is nearest slice 3, that of 7 where it is nearest 7.
    nearest = np.rint(image.data)
    assert np.all(nearest[overlay.data == 200.0] == 3)
    assert np.all(nearest[overlay.data == 50.0] == 7)
    assert np.all(overlay.data[(nearest == 3) & ~np.isnan(image.data)] == 200.0)


def test_any_numeric_dtype_gives_the_same_planes() -> None:
    as_float = _volume("tilted")
    as_int = _volume("tilted", dtype=np.int16)
    reformat = Reformatter.of(as_float)
    for kind in PlaneKind:
        depth = reformat.layout.snap(kind, reformat.layout.axes[kind].to_view(np.asarray(SPHERE.centre))[2])
        a = reformat.plane(as_float.array, kind, depth).data
        b = Reformatter.of(as_int).plane(as_int.array, kind, depth).data
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32


def test_scrolling_steps_through_true_slice_positions_of_a_parallel_plane() -> None:
    volume = _volume("gapped")
    reformat = Reformatter.of(volume)
    axial = reformat.layout.depths(PlaneKind.AXIAL)
    np.testing.assert_allclose(axial, np.sort(volume.positions[:, 2]))
    assert reformat.layout.step(PlaneKind.AXIAL, axial[2], 1) == pytest.approx(axial[3])
    assert reformat.layout.step(PlaneKind.AXIAL, axial[-1], 5) == pytest.approx(axial[-1])
    image = reformat.plane(volume.array, PlaneKind.AXIAL, axial[3])
    np.testing.assert_array_equal(image.data, volume.array[3])  # the acquired slice itself, not resampled


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_three_planes_stay_within_half_the_volume_of_extra_memory(dtype: type) -> None:
    # A 512² matrix as in the issue, a third of its 300 slices.
    volume = marker_volume(100, 512, pixel_spacing=(0.5, 0.5), spacing_z=1.0, tilt_deg=10.0, dtype=dtype)
    reformat = Reformatter.of(volume)
    centre = reformat.slice_point(50)
    maps = {50: np.zeros((512, 512), np.uint8)}
    tracemalloc.start()
    try:
        for kind in PlaneKind:
            depth = reformat.layout.snap(kind, reformat.layout.axes[kind].to_view(centre)[2])
            reformat.plane(volume.array, kind, depth)
            reformat.plane(maps.get, kind, depth, normal="nearest", fill=0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 0.5 * volume.array.nbytes, (peak, volume.array.nbytes)


def test_feet_first_axial_plane_is_its_slice_mirrored_to_the_patients_left_on_the_right() -> None:
    volume = _volume("feet_first")
    reformat = Reformatter.of(volume)
    depths = reformat.layout.depths(PlaneKind.AXIAL)
    k = 5  # slice 0 is the most superior: depths ascend as slices descend
    image = reformat.plane(volume.array, PlaneKind.AXIAL, float(volume.positions[k][2]))
    np.testing.assert_array_equal(image.data, volume.array[k][:, ::-1])
    assert depths[0] == pytest.approx(volume.positions[-1][2])


@pytest.mark.parametrize("kind", [PlaneKind.CORONAL, PlaneKind.SAGITTAL])
def test_maps_on_every_slice_are_read_a_line_at_a_time_with_the_same_values(kind: PlaneKind) -> None:
    """The one-line path (one row or column of each map, all rows interpolated together) against the general
    one (each map interpolated at its own pixels), at a depth between two rows or columns of the slices."""
    from viewer.dicom.reformat.sampler import _bilinear_per_slice, _one_line, _Side

    volume = marker_volume(12, 24, pixel_spacing=(0.7, 0.7), spacing_z=2.0)
    rng = np.random.default_rng(5)
    maps = {k: rng.integers(0, 255, (24, 24)).astype(np.uint8) for k in range(12) if k != 4}
    reformat = Reformatter.of(volume)
    depth = float(reformat.layout.depths(kind)[10]) + 0.3
    plan = reformat.plan(kind, depth)
    fast = reformat.plane(maps.get, kind, depth, normal="nearest", fill=0.0).data
    nearest_k = np.where(plan.weight >= 0.5, plan.upper.k, plan.lower.k)
    side = _Side(nearest_k, plan.lower.j, plan.lower.i)  # untilted: both sides share their rows and columns
    assert np.array_equal(plan.lower.j, plan.upper.j) and np.array_equal(plan.lower.i, plan.upper.i)
    shape = np.broadcast_shapes(side.k.shape, side.j.shape, side.i.shape)
    assert _one_line(maps, side, shape, int(side.k.min()), int(side.k.max())) is not None
    general = _Side(side.k, np.broadcast_to(side.j, shape), np.broadcast_to(side.i, shape))  # not one line
    slow = _bilinear_per_slice(maps.get, general, *shape)
    slow = np.where(np.broadcast_to(plan.valid, shape) & ~np.isnan(slow), slow, 0.0)
    assert fast.shape == slow.shape and np.allclose(fast, slow, atol=1e-4)
    assert np.all(fast[np.broadcast_to(side.k, shape) == 4] == 0.0)  # the slice without a map stays empty


def test_many_maps_on_a_tilted_stack_give_the_values_the_loop_over_maps_gives(monkeypatch) -> None:
    from viewer.dicom.reformat import sampler

    volume = marker_volume(60, 20, pixel_spacing=(0.8, 0.8), spacing_z=1.0, tilt_deg=15.0)
    rng = np.random.default_rng(9)
    maps = {k: rng.integers(0, 255, (20, 20)).astype(np.uint8) for k in range(60) if k % 7}
    assert len(maps) > sampler.MANY_MAPS
    reformat = Reformatter.of(volume)
    depth = float(reformat.layout.depths(PlaneKind.SAGITTAL)[9])
    calls = []
    original = sampler._one_line_per_pixel
    monkeypatch.setattr(sampler, "_one_line_per_pixel", lambda *a: calls.append(1) or original(*a))
    fast = reformat.plane(maps.get, PlaneKind.SAGITTAL, depth, normal="nearest", fill=0.0).data
    assert calls  # the sagittal plane of a stack tilted about left-right reads one column of each slice
    monkeypatch.setattr(sampler, "MANY_MAPS", 10_000)
    slow = Reformatter.of(volume).plane(maps.get, PlaneKind.SAGITTAL, depth, normal="nearest", fill=0.0).data
    assert np.allclose(fast, slow, atol=1e-3) and len(set(np.unique(fast))) > 50
