"""The second phantom family (viewer.synth.other): conventions, ground truth, each bleed kind, DICOM round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from viewer.dicom.headers import read_header
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import split_series
from viewer.synth.bleeds import KINDS as NAME_ORDER
from viewer.synth.other import KINDS, generate_other_study
from viewer.synth.other.acquisition import draw_slice_mm
from viewer.synth.other.anatomy import draw_head
from viewer.synth.other.artefacts import Artefacts, apply_artefacts
from viewer.synth.other.fields import Block, Pose
from viewer.synth.other.lesions import Bleed
from viewer.synth.other.study import MAX_SLICES, MIN_SLICE_AREA_MM2, build_study, draw_scan, render_study
from viewer.synth.study import PhantomStudy
from viewer.synth.writer import SeriesMeta, axial_geometry, write_ct_series

MATRIX = 128


def _check_truth(st: PhantomStudy) -> None:
    """Masks, slice labels, lesions and the kind string agree with one another."""
    n, m, _ = st.hu.shape
    assert st.mask.shape == st.hu.shape and st.mask.dtype == bool
    assert st.slice_labels.shape == (n,)
    np.testing.assert_array_equal(st.slice_labels, st.mask.any(axis=(1, 2)).astype(np.uint8))
    areas = st.mask.sum(axis=(1, 2)) * st.spacing[1] * st.spacing[2]
    assert np.all(areas[st.slice_labels == 1] >= MIN_SLICE_AREA_MM2)
    assert st.label == int(bool(st.lesions)) == int(st.mask.any())
    if st.lesions:
        kinds = sorted({les.kind for les in st.lesions}, key=NAME_ORDER.index)
        assert st.kind == "+".join(kinds)
        for les in st.lesions:
            assert 0 <= les.first_slice <= les.last_slice < n
            assert st.slice_labels[les.first_slice] == 1 and st.slice_labels[les.last_slice] == 1
            assert les.volume_ml > 0 and les.size_mm > 0
        assert st.contrast_hu == max(les.contrast_hu for les in st.lesions)
    else:
        assert st.kind == "none" and st.contrast_hu is None


@pytest.fixture(scope="module")
def by_kind() -> dict[str, tuple[PhantomStudy, dict[str, np.ndarray]]]:
    out = {}
    for i, kind in enumerate(KINDS):
        out[kind] = build_study(
            np.random.default_rng(100 + i),
            matrix=MATRIX,
            kinds=[kind],
            slice_mm=5.0,
            keep=("ventricle", "cavity"),
        )
    return out


def test_same_seed_same_study_other_seed_other_study() -> None:
    a = generate_other_study(np.random.default_rng(3), matrix=64, bleed=True, slice_mm=5.0)
    b = generate_other_study(np.random.default_rng(3), matrix=64, bleed=True, slice_mm=5.0)
    c = generate_other_study(np.random.default_rng(4), matrix=64, bleed=True, slice_mm=5.0)
    np.testing.assert_array_equal(a.hu, b.hu)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.lesions == b.lesions and a.z0_mm == b.z0_mm
    assert a.hu.shape != c.hu.shape or not np.array_equal(a.hu, c.hu)


def test_shapes_spacing_and_value_ranges() -> None:
    st, kept = build_study(
        np.random.default_rng(5), matrix=MATRIX, bleed=False, slice_mm=5.0, keep=("ventricle", "cavity")
    )
    n, m, m2 = st.hu.shape
    assert st.hu.dtype == np.float32 and m == m2 == MATRIX
    dz, dy, dx = st.spacing
    assert dz == 5.0 and dy == dx and 180.0 <= dx * MATRIX <= 300.0
    assert 120.0 <= n * dz <= 260.0  # foramen magnum to vertex
    assert st.hu.min() >= -1024.0 and st.hu.max() <= 3071.0
    assert st.hu[:, 0, 0].max() == -1024.0  # outside the reconstruction circle
    _check_truth(st)
    assert not st.mask.any() and st.kind == "none" and st.label == 0
    deep = (kept["cavity"] > 15.0) & (kept["ventricle"] < 0.05)
    assert 20.0 < float(np.median(st.hu[deep])) < 45.0  # brain
    csf = kept["ventricle"] > 0.95
    assert csf.sum() > 20 and -5.0 < float(np.median(st.hu[csf])) < 20.0
    assert float(np.percentile(st.hu, 99.9)) > 900.0  # bone
    # Index 0 is the most inferior slice: the head narrows to the vertex at the top.
    area = (st.hu > -500).sum(axis=(1, 2))
    assert area[-1] < 0.5 * area.max()


def test_rows_run_anterior_to_posterior_columns_right_to_left() -> None:
    rng = np.random.default_rng(8)
    head = draw_head(rng)
    scan = draw_scan(rng, head, 96, 5.0, False)
    scan.pose = Pose(np.eye(3), scan.pose.centre)
    c = np.array([25.0, 20.0, 30.0])
    iph = Bleed("intraparenchymal", "lobar", 40.0, c - 10, c + 10, centre=c, semi=np.array([7.0, 7.0, 7.0]))
    result = render_study(head, scan, [iph], rng)
    assert result is not None
    st, _ = result
    zz, yy, xx = np.nonzero(st.mask)
    px = st.spacing[1]
    assert (xx.mean() - 47.5) * px > scan.pose.centre[0] + 15.0  # patient left = higher column
    assert (yy.mean() - 47.5) * px > scan.pose.centre[1] + 10.0  # posterior = higher row
    zc = st.z0_mm + zz.mean() * st.spacing[0]
    assert abs(zc - (scan.pose.centre[2] + c[2])) < 5.0  # superior = higher index
    # Head frame and scanner frame agree with the pose.
    b = Block.make(
        np.array([1.0]), np.array([2.0]), np.array([3.0]), Pose(np.eye(3), np.array([1.0, 1.0, 1.0]))
    )
    assert (float(b.u[0, 0, 0]), float(b.v[0, 0, 0]), float(b.w[0, 0, 0])) == (0.0, 1.0, 2.0)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_lies_where_it_should(by_kind, kind: str) -> None:
    st, kept = by_kind[kind]
    _check_truth(st)
    assert st.kind == kind and st.label == 1 and len(st.lesions) == 1
    les = st.lesions[0]
    assert 10.0 <= les.contrast_hu <= 55.0
    mask = st.mask
    assert np.all(kept["cavity"][mask] > -2.0)  # inside the cranial cavity
    px = st.spacing[1]
    if kind in ("subdural", "epidural"):
        bone = st.hu > 500.0
        dist = np.stack([ndimage.distance_transform_edt(~b) for b in bone]) * px
        assert np.mean(dist[mask] < 4.0) > 0.2  # against the inner table
        assert np.all(dist[mask] < 26.0)
    if kind == "intraventricular":
        assert np.mean(kept["ventricle"][mask] > 0.3) > 0.9
    if kind == "intraparenchymal":
        assert np.all(kept["cavity"][mask] > 1.0)
        # A haematoma's blood is its contrast above the brain it replaced.
        core = np.stack([ndimage.binary_erosion(m_) for m_ in mask])
        near = np.stack(
            [
                ndimage.binary_dilation(m_, iterations=6) ^ ndimage.binary_dilation(m_, iterations=2)
                for m_ in mask
            ]
        )
        near &= (st.hu > 10.0) & (st.hu < 50.0) & (kept["ventricle"] < 0.1)
        diff = float(st.hu[core].mean()) - float(st.hu[near].mean())
        assert les.volume_ml > 1.0 and 0.5 * les.contrast_hu < diff < 1.5 * les.contrast_hu + 8.0
    # Blood is brighter than the brain around it.
    ring = np.stack([ndimage.binary_dilation(m_, iterations=max(2, int(4 / px))) for m_ in mask]) & ~mask
    ring &= (st.hu > 15.0) & (st.hu < 50.0) & (kept["ventricle"] < 0.1)
    assert float(st.hu[mask].mean()) > float(st.hu[ring].mean()) + 5.0


def test_clear_bleed_is_large_and_its_contrast_shows() -> None:
    st, kept = build_study(
        np.random.default_rng(21), matrix=MATRIX, clear=True, slice_mm=5.0, keep=("ventricle",)
    )
    _check_truth(st)
    les = st.lesions[0]
    assert st.kind == "intraparenchymal" and les.volume_ml > 15.0 and les.contrast_hu >= 45.0
    core = ndimage.binary_erosion(st.mask, iterations=1)
    ring = np.stack(
        [
            ndimage.binary_dilation(m_, iterations=6) ^ ndimage.binary_dilation(m_, iterations=3)
            for m_ in st.mask
        ]
    )
    ring &= (st.hu > 10.0) & (st.hu < 50.0) & (kept["ventricle"] < 0.1)
    diff = float(st.hu[core].mean()) - float(st.hu[ring].mean())
    assert 0.6 * les.contrast_hu < diff < 1.3 * les.contrast_hu + 6.0  # oedema rims make it a little more


def test_two_bleeds_are_named_in_the_shared_kinds_order() -> None:
    st, _ = build_study(
        np.random.default_rng(31), matrix=96, kinds=["intraparenchymal", "subdural"], slice_mm=5.0
    )
    _check_truth(st)
    assert st.kind == "intraparenchymal+subdural"  # the order of viewer.synth.bleeds.KINDS, as every family
    assert [les.kind for les in st.lesions] == ["intraparenchymal", "subdural"]


def test_slice_thickness_is_honoured_and_thin_studies_are_capped() -> None:
    thin = generate_other_study(np.random.default_rng(6), matrix=64, bleed=False, slice_mm=0.625)
    assert thin.spacing[0] == 0.625 and thin.n_slices <= MAX_SLICES
    mid = generate_other_study(np.random.default_rng(6), matrix=64, bleed=False, slice_mm=2.5)
    assert mid.spacing[0] == 2.5 and 48 <= mid.n_slices <= 104
    draws = np.array([draw_slice_mm(np.random.default_rng(i)) for i in range(300)])
    assert draws.min() >= 0.625 and draws.max() <= 10.0
    assert np.mean((draws >= 2.5) & (draws <= 5.0)) > 0.6


def test_written_studies_load_as_dicom(tmp_path: Path) -> None:
    for i, bleed in enumerate((True, False)):
        st = generate_other_study(np.random.default_rng(40 + i), matrix=64, bleed=bleed, slice_mm=5.0)
        meta = SeriesMeta.invented("PHANTOM^OTHER", f"OT-{i}", "HEAD 5mm AXIAL")
        dz, dy, dx = st.spacing
        n, rows, cols = st.hu.shape
        origin = (-(cols - 1) / 2.0 * dx, -(rows - 1) / 2.0 * dy, st.z0_mm)
        positions, orientation = axial_geometry(n, dz, (dy, dx), (rows, cols), origin=origin)
        paths = write_ct_series(
            st.hu, tmp_path / f"s{i}", positions=positions, orientation=orientation, pixel_spacing=(dy, dx),
            slice_thickness=dz, meta=meta,
        )  # fmt: skip
        stacks = split_series([read_header(p) for p in paths])
        assert len(stacks) == 1
        vol = load_stack(stacks[0])
        assert vol.array.shape == st.hu.shape
        np.testing.assert_allclose(vol.array, np.round(st.hu), atol=1.0)
        assert vol.spacing[0] == pytest.approx(dz) and vol.spacing[1] == pytest.approx(dy)


def test_beam_hardening_darkens_between_dense_bones_and_motion_ghosts() -> None:
    x = np.arange(-60.0, 60.0, 1.0)
    y = np.arange(-60.0, 60.0, 1.0)
    slab = np.full((y.size, x.size), 30.0, np.float32)
    slab[55:65, 20:30] = 2400.0  # petrous bones right and left of the centre
    slab[55:65, 90:100] = 2400.0
    art = Artefacts(hardening=30.0, streaks=0, streak_hu=0.0, cupping=0.0, motion=(0, 0), motion_mm=0.0)
    out = slab.copy()
    apply_artefacts(art, out, 0, x, y, np.zeros(3), 1.0, np.random.default_rng(0))
    assert out[60, 60] < 30.0 - 15.0  # the dark band between them
    assert abs(float(out[10, 60]) - 30.0) < 1.0  # far from it, nothing
    moved = Artefacts(hardening=0.0, streaks=0, streak_hu=0.0, cupping=0.0, motion=(0, 1), motion_mm=4.0)
    ghost = slab.copy()
    apply_artefacts(moved, ghost, 0, x, y, np.zeros(3), 1.0, np.random.default_rng(0))
    assert np.abs(ghost - slab).max() > 100.0  # edges of the bones smeared
