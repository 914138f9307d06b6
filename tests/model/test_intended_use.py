"""The intended-use check warns about series the model was not made for, and stays quiet on a head CT."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.model.intended_use import (
    MAX_SLICES,
    MIN_MATRIX_PX,
    check_series,
    is_assessable,
    size_refusal,
)
from viewer.synth.study import generate_study

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@pytest.fixture(scope="module")
def head():
    return generate_study(np.random.default_rng(3), matrix=128, n_slices=30, bleed=False)


def _codes(warnings) -> set[str]:
    return {w.code for w in warnings}


def test_head_ct_passes(head):
    assert check_series(head.hu, head.spacing, modality="CT", orientation=AXIAL) == []


def test_thin_slices_count_as_slabs(head):
    thin = np.repeat(head.hu, 8, axis=0)
    assert check_series(thin, (0.625, *head.spacing[1:]), modality="CT", orientation=AXIAL) == []


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"modality": "MR"}, "modality"),
        ({"units": "US"}, "units"),
        ({"orientation": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)}, "orientation"),
    ],
)
def test_header_problems_warn(head, change, code):
    kwargs = {"modality": "CT", "orientation": AXIAL, **change}
    warnings = check_series(head.hu, head.spacing, **kwargs)
    assert code in _codes(warnings)
    assert all(w.message.endswith(".") for w in warnings)


def test_short_series_small_fov_and_odd_values_warn(head):
    assert "coverage" in _codes(check_series(head.hu[10:14], head.spacing, modality="CT", orientation=AXIAL))
    tiny = (head.spacing[0], 0.2, 0.2)
    assert "field_of_view" in _codes(check_series(head.hu, tiny, modality="CT", orientation=AXIAL))
    shifted = head.hu + 1024.0  # stored values without the rescale
    assert "hu_range" in _codes(check_series(shifted, head.spacing, modality="CT", orientation=AXIAL))
    soft = np.where(head.hu > -500, 300.0, head.hu).astype(np.float32)  # no brain-range tissue
    soft[:, :2, :2] = 1500.0
    assert "anatomy" in _codes(check_series(soft, head.spacing, modality="CT", orientation=AXIAL))


def test_a_fatty_body_ct_is_not_a_head(head):
    """A series with a body's share of fat (a cardiac calcium score, a chest) is out of scope."""
    rng = np.random.default_rng(0)
    body = head.hu.copy()
    tissue = (body > -500) & (body < 300)
    body[tissue & (rng.random(body.shape) < 0.35)] = -100.0
    warnings = check_series(body, head.spacing, modality="CT", orientation=AXIAL)
    (anatomy,) = [w for w in warnings if w.code == "anatomy"]
    assert "fat range" in anatomy.message and anatomy.disqualifying


def test_coverage_is_the_span_of_the_positions_not_slices_times_spacing(head):
    two = head.hu[[0, -1]]
    spacing = (2.5, *head.spacing[1:])
    positions = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 205.0]])  # two slices with a gap between them
    (coverage,) = [
        w
        for w in check_series(two, spacing, modality="CT", orientation=AXIAL, positions=positions)
        if w.code == "coverage"
    ]  # still too few slices for the model
    assert "covers 208 mm in 2 slices" in coverage.message
    n = head.hu.shape[0]
    uniform = np.stack([np.zeros(n), np.zeros(n), np.arange(n) * head.spacing[0]], axis=1)
    assert check_series(head.hu, head.spacing, modality="CT", orientation=AXIAL, positions=uniform) == []
    ends = [0, 1, 2, 3, n - 4, n - 3, n - 2, n - 1]  # 8 slices of the head, its middle missing
    without = check_series(head.hu[ends], head.spacing, modality="CT", orientation=AXIAL)
    with_positions = check_series(
        head.hu[ends], head.spacing, modality="CT", orientation=AXIAL, positions=uniform[ends]
    )
    assert "coverage" in _codes(without) and "coverage" not in _codes(with_positions)


def test_out_of_scope_warnings_disqualify(head):
    """Every check that says the series is not what the model was made for withholds the finding."""
    cases = [
        check_series(head.hu, head.spacing, modality="MR", orientation=AXIAL),
        check_series(head.hu[10:12], head.spacing, modality="CT", orientation=AXIAL),
        check_series(head.hu, (head.spacing[0], 0.2, 0.2), modality="CT", orientation=AXIAL),
        check_series(head.hu, head.spacing, modality="CT", orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0)),
        check_series(head.hu + 1024.0, head.spacing, modality="CT", orientation=AXIAL),
        check_series(head.hu[:, :32, :32], (head.spacing[0], 8.0, 8.0), modality="CT", orientation=AXIAL),
    ]
    for warnings in cases:
        assert warnings and not is_assessable(warnings)
    assert "matrix" in _codes(cases[-1])


def test_somewhat_thick_slices_only_advise(head):
    (warning,) = check_series(head.hu, (8.0, *head.spacing[1:]), modality="CT", orientation=AXIAL)
    assert warning.code == "slice_thickness" and not warning.disqualifying
    assert is_assessable([warning])


def test_size_limits_refuse_tiny_matrices_and_endless_stacks():
    assert size_refusal((40, MIN_MATRIX_PX, MIN_MATRIX_PX)) == ""
    assert size_refusal((MAX_SLICES, 512, 512)) == ""
    assert "1 × 1 pixels" in size_refusal((3000, 1, 1))
    assert f"{MIN_MATRIX_PX}" in size_refusal((30, 512, MIN_MATRIX_PX - 1))
    assert f"{MAX_SLICES + 1} slices" in size_refusal((MAX_SLICES + 1, 512, 512))


def test_a_real_abdominal_ct_slice_is_flagged_by_its_fat() -> None:
    """pydicom-data's pancreas CT slice (36 % fat, see MAX_FAT_FRACTION's comment) is not taken for a head."""
    import importlib.util
    from pathlib import Path

    from viewer.dicom.index import scan
    from viewer.dicom.readers import load_stack

    spec = importlib.util.find_spec("data_store")  # pydicom-data
    if spec is None or spec.origin is None:
        pytest.skip("pydicom-data is not installed")
    path = Path(spec.origin).parent / "data" / "explicit_VR-UN.dcm"
    volume = load_stack(next(scan([str(path)], use_cache=False).stacks()))
    warnings = check_series(
        volume.array, volume.spacing, modality=volume.modality, units=volume.units, orientation=AXIAL
    )
    (anatomy,) = [w for w in warnings if w.code == "anatomy"]
    assert anatomy.message.startswith("36% of the tissue lies in the fat range")


def test_padding_outside_the_scan_circle_is_not_a_value_problem(head) -> None:
    """Scanners pad outside the scan circle with values below air (−3024, −2000); a real head slice in
    pydicom-data has 21 % of them. They must not make a head CT "not assessed"."""
    padded = head.hu.copy()
    yy, xx = np.mgrid[: padded.shape[1], : padded.shape[2]]
    centre = (padded.shape[1] - 1) / 2
    outside = (yy - centre) ** 2 + (xx - centre) ** 2 > (0.48 * padded.shape[1]) ** 2
    for value in (-3024.0, -2000.0):
        padded[:, outside] = value
        assert check_series(padded, head.spacing, modality="CT", orientation=AXIAL) == []
    nearly_all = np.full_like(head.hu, -3024.0)
    nearly_all[:, :10, :10] = head.hu[:, 60:70, 60:70]
    (warning,) = [
        w
        for w in check_series(nearly_all, head.spacing, modality="CT", orientation=AXIAL)
        if w.code == "hu_range"
    ]
    assert "below air" in warning.message


def test_a_real_head_slice_with_padding_passes_the_value_checks() -> None:
    import importlib.util
    from pathlib import Path

    from viewer.dicom.index import scan
    from viewer.dicom.readers import load_stack

    spec = importlib.util.find_spec("data_store")  # pydicom-data
    if spec is None or spec.origin is None:
        pytest.skip("pydicom-data is not installed")
    volume = load_stack(
        next(scan([str(Path(spec.origin).parent / "data" / "693_UNCR.dcm")], use_cache=False).stacks())
    )
    assert float((np.asarray(volume.array) < -3000).mean()) > 0.15
    warnings = check_series(
        volume.array, volume.spacing, modality=volume.modality, units=volume.units, orientation=AXIAL
    )
    assert {"hu_range", "anatomy"}.isdisjoint(_codes(warnings)), [w.message for w in warnings]


def test_integer_volumes_get_the_same_warnings_as_float32(head):
    hu = np.rint(head.hu).astype(np.float32)
    for changed in (hu, hu + 1500.0):  # a head CT, and one whose values are out of the HU range
        expected = check_series(changed, head.spacing, modality="CT", orientation=AXIAL)
        got = check_series(changed.astype(np.int16), head.spacing, modality="CT", orientation=AXIAL)
        assert got == expected
    assert _codes(got) == {"hu_range"}
