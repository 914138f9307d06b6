"""Preprocessing steps on numpy and torch: windows, resize/pad, slab averaging and its mapping, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from viewer.errors import ViewerError
from viewer.model.preprocess import (
    AIR_HU,
    Preprocessor,
    ResizePad,
    SlabAverage,
    WindowStack,
)


def test_windows_values_and_shape():
    hu = np.array([[-1000.0, 0.0, 40.0, 80.0, 2000.0]], dtype=np.float32)[None]  # (1, 1, 5)
    out = WindowStack()(hu)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == (1, 3, 1, 5)
    brain, subdural, bone = out[0, :, 0]
    np.testing.assert_allclose(brain, [0, 0, 0.5, 1, 1], atol=1e-6)
    np.testing.assert_allclose(subdural, [0, 0.1, 0.3, 0.5, 1], atol=1e-6)
    np.testing.assert_allclose(bone, [0, 800 / 2800, 840 / 2800, 880 / 2800, 1], atol=1e-6)
    assert out.min() >= 0 and out.max() <= 1


def test_windows_torch_is_differentiable():
    hu = torch.tensor([[[40.0, 5000.0]]], requires_grad=True)
    WindowStack()(hu).sum().backward()
    np.testing.assert_allclose(hu.grad.numpy()[0, 0], [1 / 80 + 1 / 200 + 1 / 2800, 0.0], rtol=1e-5)


@pytest.mark.parametrize(
    ("shape", "spacing", "resized"),
    [
        ((64, 64), (1, 1), (32, 32)),
        ((40, 80), (1, 1), (16, 32)),
        ((20, 10), (1, 2), (32, 32)),
        ((8, 8), (1, 1), (32, 32)),
    ],
)
def test_resize_keeps_aspect_by_padding(shape, spacing, resized):
    step = ResizePad(32)
    img = np.full((2, *shape), 100.0, dtype=np.float32)
    out = step(img, spacing)
    assert out.shape == (2, 32, 32) and out.dtype == np.float32
    geo = step.geometry(shape, spacing)
    assert geo.resized == resized
    top, left = geo.offset
    inside = out[:, top : top + resized[0], left : left + resized[1]]
    np.testing.assert_allclose(inside, 100.0, atol=1e-4)
    assert np.isclose(out, AIR_HU).sum() == 2 * (32 * 32 - resized[0] * resized[1])


def test_resize_is_antialiased():
    checker = (np.indices((128, 128)).sum(0) % 2).astype(np.float32)
    smooth = ResizePad(36, antialias=True)(checker)
    aliased = ResizePad(36, antialias=False)(checker)
    assert np.abs(smooth - 0.5).max() < 0.05
    assert np.abs(aliased - 0.5).max() > 0.3


def test_slab_mapping_thin_series():
    mapping = SlabAverage(5.0).mapping(20, 0.625)
    assert mapping.n_model == 3 and mapping.spacing == pytest.approx(5.0)
    np.testing.assert_array_equal(mapping.starts, [0, 8, 16])
    np.testing.assert_array_equal(mapping.stops, [8, 16, 20])
    np.testing.assert_array_equal(mapping.original_to_model, [0] * 8 + [1] * 8 + [2] * 4)
    np.testing.assert_allclose(mapping.weights[[0, 8, 19]], [1 / 8, 1 / 8, 1 / 4])
    assert list(mapping.original_slices(2)) == [16, 17, 18, 19]
    np.testing.assert_array_equal(mapping.to_original(np.array([1.0, 2.0, 3.0])), [1] * 8 + [2] * 8 + [3] * 4)


@pytest.mark.parametrize(("dz", "k"), [(5.0, 1), (7.0, 1), (2.5, 2), (1.25, 4), (1.0, 5), (0.625, 8)])
def test_slab_size_by_spacing(dz, k):
    mapping = SlabAverage(5.0).mapping(40, dz)
    assert (mapping.stops - mapping.starts)[0] == k
    assert mapping.spacing == pytest.approx(dz * k)


def test_slab_average_numpy_torch_and_matrix_agree():
    rng = np.random.default_rng(0)
    vol = rng.normal(0, 100, (11, 4, 5)).astype(np.float32)
    slabs, mapping = SlabAverage(5.0)(vol, 1.25)
    assert isinstance(slabs, np.ndarray) and slabs.shape == (3, 4, 5)
    np.testing.assert_allclose(slabs[0], vol[0:4].mean(0), atol=1e-4)
    np.testing.assert_allclose(slabs[2], vol[8:11].mean(0), atol=1e-4)
    via_matrix = np.tensordot(mapping.averaging_matrix(), vol, axes=1)
    np.testing.assert_allclose(slabs, via_matrix, atol=1e-4)
    slabs_t, _ = SlabAverage(5.0)(torch.from_numpy(vol), 1.25)
    np.testing.assert_allclose(slabs_t.numpy(), slabs, atol=1e-4)


def test_slab_average_passes_thick_series_through():
    vol = np.zeros((4, 3, 3), dtype=np.float32)
    out, mapping = SlabAverage(5.0)(vol, 5.0)
    assert out is vol and mapping.n_model == 4


def _volume(z: int = 20, y: int = 48, x: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = np.full((z, y, x), -1000.0, dtype=np.float32)
    vol[:, 8:40, 6:34] = 35.0 + rng.normal(0, 10, (z, 32, 28))
    vol[:, 20:26, 10:16] = 70.0
    return vol


def test_preprocessor_output_and_chunking_match_differentiable_path():
    vol = _volume(z=40)
    prep = Preprocessor(size=32, target_spacing=5.0)
    result = prep(vol, (1.25, 0.5, 0.5))
    assert result.tensor.shape == (10, 3, 32, 32) and result.tensor.dtype == torch.float32
    assert result.mapping.n_model == 10 and result.mapping.n_original == 40
    again, mapping = prep.differentiable(torch.from_numpy(vol), (1.25, 0.5, 0.5))
    assert mapping == result.mapping
    torch.testing.assert_close(again, result.tensor, atol=1e-5, rtol=0)


def test_gradient_reaches_original_resolution():
    vol = torch.from_numpy(_volume(z=6)).requires_grad_(True)
    x, mapping = Preprocessor(size=32).differentiable(vol, (2.5, 0.5, 0.5))
    assert x.shape == (3, 3, 32, 32)
    x[1].sum().backward()
    grad = vol.grad
    assert grad.shape == vol.shape
    assert grad[2:4].abs().sum() > 0  # slices 2 and 3 make model slice 1
    assert grad[[0, 1, 4, 5]].abs().sum() == 0
    assert grad[2, 0, 0] == 0  # air lies below every window


def test_rebuild_model_slices_matches_full_path():
    vol_np = _volume(z=8)
    spacing = (1.25, 0.5, 0.5)
    prep = Preprocessor(size=32)
    inputs = prep(vol_np, spacing)
    weights = torch.randn(inputs.tensor.shape)

    full = torch.from_numpy(vol_np).requires_grad_(True)
    (prep.differentiable(full, spacing)[0] * weights).sum().backward()

    leaf = torch.from_numpy(vol_np[[1, 5]]).requires_grad_(True)
    idx, rebuilt = prep.rebuild_model_slices(inputs, {1: leaf[0], 5: leaf[1]})
    np.testing.assert_array_equal(idx, [0, 1])
    torch.testing.assert_close(rebuilt.detach(), inputs.tensor[idx], atol=1e-5, rtol=0)
    (rebuilt * weights[idx]).sum().backward()
    torch.testing.assert_close(leaf.grad, full.grad[[1, 5]], atol=1e-7, rtol=1e-4)


def test_rebuild_with_batched_replacements():
    vol_np = _volume(z=4)
    prep = Preprocessor(size=32)
    inputs = prep(vol_np, (5.0, 0.5, 0.5))
    batch = torch.from_numpy(vol_np[2]).expand(3, -1, -1).clone()
    idx, rebuilt = prep.rebuild_model_slices(inputs, {2: batch})
    assert rebuilt.shape == (3, 1, 3, 32, 32)
    torch.testing.assert_close(rebuilt[1, 0], inputs.tensor[2], atol=1e-6, rtol=0)


@pytest.mark.parametrize("spacing", [(0.0, 0.5, 0.5), (5.0, -1.0, 0.5), (float("nan"), 0.5, 0.5)])
def test_invalid_spacing_is_a_viewer_error(spacing):
    with pytest.raises(ViewerError):
        Preprocessor(size=32)(_volume(z=2), spacing)


def test_non_finite_volume_is_a_viewer_error():
    vol = _volume(z=2)
    vol[0, 0, 0] = np.nan
    with pytest.raises(ViewerError):
        Preprocessor(size=32)(vol, (5.0, 0.5, 0.5))


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint16])
def test_integer_volumes_give_the_float32_volumes_model_input(dtype):
    # Loaded CT volumes hold int16 HU; the model input must not depend on the volume's type.
    vol = np.rint(_volume(z=12)).astype(np.float32)
    if dtype == np.uint16:
        vol += 1024.0  # unsigned data (an identity rescale of uint16)
    prep = Preprocessor(size=32, target_spacing=5.0)
    as_float = prep(vol, (2.5, 0.5, 0.5))
    as_int = prep(vol.astype(dtype), (2.5, 0.5, 0.5))
    assert as_int.hu.dtype == dtype  # kept by reference, not copied
    torch.testing.assert_close(as_int.tensor, as_float.tensor, atol=0, rtol=0)
    _, rebuilt = prep.rebuild_model_slices(as_int, {3: torch.from_numpy(vol[3])})
    _, expected = prep.rebuild_model_slices(as_float, {3: torch.from_numpy(vol[3])})
    torch.testing.assert_close(rebuilt, expected, atol=0, rtol=0)
