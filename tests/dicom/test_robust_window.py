"""The histogram path of the default window for integer volumes."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.dicom.pixels import robust_window


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint8])
def test_integer_windows_match_numpys_percentiles(dtype) -> None:
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    values = np.clip(rng.normal(100, 40, (7, 33, 29)), info.min, info.max).astype(dtype)
    center, width = robust_window(values)
    lo, hi = np.percentile(values.astype(np.float64), [1, 99])
    assert center == pytest.approx((lo + hi) / 2) and width == pytest.approx(hi - lo)


def test_a_large_volume_is_sampled_by_whole_slices_close_to_the_full_percentiles() -> None:
    rng = np.random.default_rng(2)
    volume = rng.normal(40, 300, (40, 64, 64)).astype(np.int16)
    volume[::2] += 200  # slices differ, so a sample of too few slices would be off
    center, width = robust_window(volume, max_samples=10 * 64 * 64)
    lo, hi = np.percentile(volume.astype(np.float64), [1, 99])
    assert abs(center - (lo + hi) / 2) < 0.02 * (hi - lo) and abs(width - (hi - lo)) < 0.02 * (hi - lo)


def test_a_constant_integer_image_gets_a_unit_window() -> None:
    assert robust_window(np.full((4, 4), -7, np.int16)) == (-7.0, 1.0)
