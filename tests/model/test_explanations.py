"""Explanations: gate traces, hidden-state saliency, pixel saliency at the original resolution, sanity check."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from viewer.model import explanations as ex
from viewer.model.config import ModelConfig
from viewer.model.network import SliceGRUNet, lse_pool
from viewer.model.preprocess import AIR_HU, Preprocessed, Preprocessor
from viewer.model.reference import reference_for_length

CONFIG = ModelConfig(input_size=32, encoder_channels=(8, 16, 32), hidden_size=16)
SPACING = (2.5, 0.5, 0.5)  # 2.5 mm → two original slices per 5 mm model slice


def _volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    vol = np.full((12, 48, 40), -1000.0, dtype=np.float32)
    vol[:, 8:40, 6:34] = 35.0 + rng.normal(0, 10, (12, 32, 28))
    vol[:, 6:8, 6:34] = 1200.0
    vol[5:7, 20:26, 10:16] = 75.0
    return vol


@pytest.fixture(scope="module")
def model() -> SliceGRUNet:
    torch.manual_seed(0)
    return SliceGRUNet(CONFIG).eval()


@pytest.fixture(scope="module")
def inputs() -> Preprocessed:
    return Preprocessor.from_config(CONFIG)(_volume(), SPACING)


def test_gate_traces(model, inputs):
    expl = ex.gate_traces(model, inputs)
    assert expl.mapping.n_model == 6
    for d in ex.DIRECTIONS:
        for gate in ("z", "r", "h"):
            assert expl.matrices[f"{gate}_{d}"].shape == (16, 6)
        for gate in ("z", "r"):
            values = expl.slice_values[f"{gate}_mean_{d}"]
            assert values.shape == (6,)
            assert np.all((values > 0) & (values < 1))
            np.testing.assert_allclose(values, expl.matrices[f"{gate}_{d}"].mean(0), rtol=1e-6)
    assert "1 = keep previous state" in expl.labels["z_forward"]
    assert expl.on_original_slices("z_mean_forward").shape == (12,)


def _cell(x: torch.Tensor, h: torch.Tensor, gru: torch.nn.Module, suffix: str) -> torch.Tensor:
    """One GRU step, PyTorch's equations written out."""
    gi = x @ getattr(gru, f"weight_ih_l0{suffix}").double().T + getattr(gru, f"bias_ih_l0{suffix}").double()
    gh = h @ getattr(gru, f"weight_hh_l0{suffix}").double().T + getattr(gru, f"bias_hh_l0{suffix}").double()
    i_r, i_z, i_n = gi.chunk(3)
    h_r, h_z, h_n = gh.chunk(3)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def _slow_state_and_gradient(
    model: SliceGRUNet, feats: torch.Tensor, direction: int, t: int, direct_only: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h_t`` of one direction and ``∂ study logit / ∂ h_t``, slice by slice, autograd on one injected state.

    The state at ``t`` is replaced by a leaf that the head at ``t`` reads; with ``direct_only`` the recurrence
    goes on from a detached copy, so only the head's path reaches the leaf.
    """
    n, hidden = feats.shape[0], model.config.hidden_size
    states: list[list[torch.Tensor]] = [[torch.zeros(0)] * n, [torch.zeros(0)] * n]
    leaf = torch.zeros(0)
    for d, suffix in enumerate(("", "_reverse")):
        h = torch.zeros(hidden, dtype=torch.float64)
        for s in range(n) if d == 0 else reversed(range(n)):
            h = _cell(feats[s], h, model.gru, suffix)
            if d == direction and s == t:
                leaf = h.detach().requires_grad_(True)
                states[d][s] = leaf
                h = h.detach() if direct_only else leaf
            else:
                states[d][s] = h
    hidden_states = torch.stack([torch.cat([states[0][s], states[1][s]]) for s in range(n)])
    head = model.slice_head
    logits = hidden_states @ head.weight.double()[0] + head.bias.double()[0]
    study = lse_pool(logits, model.config.lse_sharpness)
    (grad,) = torch.autograd.grad(study, leaf)
    return leaf.detach(), grad


def test_hidden_track_is_the_state_difference_of_the_slow_definition(model, inputs):
    """Per slice and direction: (h_t(X) − h_t(R)) · ½ (∂y/∂h_t at X + at R), total and direct path."""
    rng = torch.Generator().manual_seed(3)
    stored = torch.randn(7, CONFIG.feature_size, generator=rng)
    ref_model = copy.deepcopy(model)
    ref_model.reference_features = stored
    expl = ex.hidden_state_saliency(ref_model, inputs)
    with torch.no_grad():
        feats = model.encode(inputs.tensor).double()
    ref = reference_for_length(stored, feats.shape[0]).double()
    for d, name in enumerate(ex.DIRECTIONS):
        for part, direct_only in (("", False), ("_direct", True)):
            expected = []
            for t in range(feats.shape[0]):
                h_x, g_x = _slow_state_and_gradient(model, feats, d, t, direct_only)
                h_r, g_r = _slow_state_and_gradient(model, ref, d, t, direct_only)
                expected.append(float(((h_x - h_r) * 0.5 * (g_x + g_r)).sum()))
            np.testing.assert_allclose(expl.slice_values[f"{name}{part}"], expected, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(
            expl.slice_values[f"{name}_carried"],
            expl.slice_values[name] - expl.slice_values[f"{name}_direct"],
            atol=1e-15,
        )
    np.testing.assert_allclose(
        expl.slice_values["combined"], expl.slice_values["forward"] + expl.slice_values["reverse"]
    )
    assert expl.params["reference"] == "normal-series reference"
    # The last forward state and the first reverse state feed only the head: nothing is carried from them.
    assert expl.slice_values["forward_carried"][-1] == pytest.approx(0.0, abs=1e-15)
    assert expl.slice_values["reverse_carried"][0] == pytest.approx(0.0, abs=1e-15)


def test_hidden_track_is_on_a_fixed_logit_scale(model, inputs):
    """Not scaled per series: the sum over slices and directions is comparable to the change in the logit."""
    expl = ex.hidden_state_saliency(model, inputs)
    assert expl.on_original_slices("combined").shape == (12,)
    assert expl.matrices["units_forward"].shape == (16, 6)
    assert expl.params["sum_of_contributions"] == pytest.approx(float(expl.slice_values["combined"].sum()))
    assert "no reference" in expl.params["reference"]
    np.testing.assert_allclose(
        expl.slice_values["combined"],
        expl.matrices["units_forward"].sum(0) + expl.matrices["units_reverse"].sum(0),
        rtol=1e-12,
    )
    assert np.abs(expl.slice_values["combined"]).max() != pytest.approx(1.0)


def test_hidden_track_methods(model, inputs):
    sens = ex.hidden_state_saliency(model, inputs, method="sensitivity")
    assert np.all(sens.slice_values["forward"] >= 0)
    gxs = ex.hidden_state_saliency(model, inputs, method="gradient_x_state")
    np.testing.assert_allclose(
        gxs.slice_values["forward"], gxs.matrices["units_forward"].sum(0), rtol=1e-12, atol=1e-15
    )
    with pytest.raises(ValueError, match="method"):
        ex.hidden_state_saliency(model, inputs, method="gates")  # type: ignore[arg-type]


def test_hidden_track_has_no_float32_underflow(model, inputs):
    """A slice far below the top one gets a pooling weight softmax(r · s) that is 0 in float32; not in float64."""
    steep = copy.deepcopy(model)
    with torch.no_grad():
        steep.slice_head.weight.mul_(400.0)
        logits = steep.forward_features(steep.encode(inputs.tensor).unsqueeze(0)).slice_logits[0]
        weights32 = torch.softmax(steep.config.lse_sharpness * logits, dim=-1)
    assert (weights32 == 0).any()  # the case that gave exact zeros
    for method in ex.HIDDEN_METHODS:
        expl = ex.hidden_state_saliency(steep, inputs, method=method)
        assert np.all(expl.slice_values["forward_direct"] != 0), method
        assert np.all(expl.slice_values["reverse_direct"] != 0), method


def test_hidden_track_passes_the_randomisation_check(model, inputs):
    """With the GRU and head randomised the track must change (Adebayo et al., 2018)."""
    expl = ex.hidden_state_saliency(model, inputs)
    rand = ex.hidden_state_saliency(ex.randomize_weights_cascading(model, "gru", seed=1), inputs)
    rho = ex.spearman_rank_correlation(
        expl.slice_values["combined"], rand.slice_values["combined"], absolute=False
    )
    assert abs(rho) < 0.9


def test_analyse_sequence_matches_separate_calls_and_keeps_eval(model, inputs):
    bn = model.encoder.stem[1]
    stats_before = bn.running_mean.clone()
    result = ex.analyse_sequence(model, inputs)
    assert not model.training
    torch.testing.assert_close(bn.running_mean, stats_before)
    assert not result.output.study_logit.requires_grad
    with torch.no_grad():
        plain = model(inputs.tensor)
    torch.testing.assert_close(result.output.slice_logits, plain.slice_logits, atol=1e-5, rtol=0)
    separate = ex.hidden_state_saliency(model, inputs)
    np.testing.assert_allclose(
        result.hidden_saliency.slice_values["forward"], separate.slice_values["forward"], rtol=1e-5
    )


def test_training_mode_is_refused(inputs):
    model = SliceGRUNet(CONFIG)
    with pytest.raises(ValueError, match="eval"):
        ex.gradient_x_input(model, inputs, slices=[5])
    assert model.training


def test_pixel_saliency_at_original_resolution(model, inputs):
    expl = ex.gradient_x_input(model, inputs, slices=[5, 9])
    assert sorted(expl.pixel_maps) == [5, 9]
    for m in expl.pixel_maps.values():
        assert m.shape == (48, 40) and m.dtype == np.float32
        assert np.abs(m).sum() > 0
        assert np.all(m[:, :2] == 0)  # air, below every window: no gradient
    shown = expl.display_map(5)
    assert shown.min() >= 0 and shown.max() == pytest.approx(1.0)


def test_pixel_gradient_equals_full_differentiable_path(model, inputs):
    vol = torch.from_numpy(_volume()).requires_grad_(True)
    x, _ = inputs.preprocessor.differentiable(vol, SPACING)
    model(x).study_logit.sum().backward()
    expl = ex.gradient_x_input(model, inputs, slices=[4, 7])
    for i in (4, 7):
        expected = vol.grad[i].numpy() * (_volume()[i] - AIR_HU)
        np.testing.assert_allclose(expl.pixel_maps[i], expected, atol=1e-7 + 1e-4 * np.abs(expected).max())


def test_default_slices_are_the_top_model_slice(model, inputs):
    with torch.no_grad():
        top = int(model(inputs.tensor).slice_logits[0].argmax())
    expl = ex.gradient_x_input(model, inputs)
    assert sorted(expl.pixel_maps) == list(inputs.mapping.original_slices(top))


def test_slice_target(model, inputs):
    expl = ex.gradient_x_input(model, inputs, slices=[2, 8], target="slice")
    assert sorted(expl.pixel_maps) == [2, 8]
    with pytest.raises(ValueError):
        ex.gradient_x_input(model, inputs, slices=[2], target="voxel")


@pytest.mark.parametrize("baseline", [AIR_HU, "blur"])
def test_integrated_gradients_completeness(model, inputs, baseline):
    """Attributions add up to the change of the study logit when the slice is replaced by its baseline.

    The encoder's max pooling makes the path piecewise smooth with many kinks, so the midpoint sum needs many
    steps to converge (48 steps were 58 % off, 256 steps 17 %).
    """
    expl = ex.integrated_gradients(model, inputs, slices=[5], steps=1024, batch=128, baseline=baseline)
    vol = _volume()
    replaced = vol.copy()
    replaced[5] = ex.baseline_slice(inputs, 5, baseline)
    prep = inputs.preprocessor
    with torch.no_grad():
        after = model(prep(vol, SPACING).tensor).study_logit
        before = model(prep(replaced, SPACING).tensor).study_logit
    delta = (after - before).item()
    assert expl.pixel_maps[5].sum() == pytest.approx(delta, rel=0.1, abs=1e-6)


def test_blur_baseline_keeps_the_head():
    prepared = Preprocessor.from_config(CONFIG)(_volume(), SPACING)
    blurred = ex.baseline_slice(prepared, 5, "blur", blur_mm=2.0)
    assert blurred.shape == (48, 40)
    assert blurred[24, 20] > 0 and blurred[1, 1] < -900
    np.testing.assert_array_equal(ex.baseline_slice(prepared, 5, -50.0), np.full((48, 40), -50.0))
    with pytest.raises(ValueError):
        ex.baseline_slice(prepared, 5, "zeros")


def test_smoothgrad_is_seeded_and_differs_from_the_plain_gradient(model, inputs):
    a = ex.smoothgrad(model, inputs, slices=[5], samples=4, batch=2, seed=1)
    b = ex.smoothgrad(model, inputs, slices=[5], samples=4, batch=4, seed=1)
    np.testing.assert_allclose(a.pixel_maps[5], b.pixel_maps[5], rtol=1e-4, atol=1e-12)
    plain = ex.smoothgrad(model, inputs, slices=[5], samples=1, noise_hu=0.0)
    assert not np.allclose(a.pixel_maps[5], plain.pixel_maps[5])


def test_explainers_share_a_signature(model, inputs):
    for name, fn in ex.EXPLAINERS.items():
        opts = {"slices": [5]} if name in ex.PIXEL_METHODS else {}
        if name == "smoothgrad":
            opts["samples"] = 2
        if name == "integrated_gradients":
            opts["steps"] = 2
        expl = fn(model, inputs, **opts)
        assert expl.method == name and expl.as_vector().size > 0


def test_randomisation_is_cascading_and_leaves_the_original(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rand = ex.randomize_weights_cascading(model, "gru", seed=3)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    changed = {k for k, v in rand.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("slice_head") for k in changed)
    assert any(k.startswith("gru") for k in changed)
    assert not any(k.startswith("encoder") for k in changed)
    assert not rand.training
    deeper = ex.randomize_weights_cascading(model, len(model.layer_names_top_down()))
    assert any(
        not torch.equal(v, before[k]) for k, v in deeper.state_dict().items() if k.startswith("encoder.stem")
    )
    with pytest.raises(ValueError):
        ex.randomize_weights_cascading(model, "decoder")


def test_randomisation_changes_the_map(model, inputs):
    check = ex.randomisation_check(model, inputs, "gradient_x_input", slices=[5])
    assert list(check) == model.layer_names_top_down()
    assert all(r < 0.9 for r in check.values())
    original = ex.gradient_x_input(model, inputs, slices=[5]).display_map(5)
    rand = ex.randomize_weights_cascading(model, "encoder.stem")
    assert not np.allclose(ex.gradient_x_input(rand, inputs, slices=[5]).display_map(5), original, atol=0.05)


def test_spearman_helper():
    a = np.arange(10.0)
    assert ex.spearman_rank_correlation(a, a * 3 + 1) == pytest.approx(1.0)
    assert ex.spearman_rank_correlation(a + 1, -(a + 1), absolute=False) == pytest.approx(-1.0)
    assert np.isnan(ex.spearman_rank_correlation(np.ones(5), a[:5]))
    with pytest.raises(ValueError):
        ex.spearman_rank_correlation(a, a[:3])


def test_pointing_game():
    expl = ex.Explanation("demo", Preprocessor(size=32).slabs.mapping(3, 5.0))
    expl.pixel_maps = {0: np.zeros((8, 8)), 1: np.zeros((8, 8)), 2: np.zeros((8, 8))}
    expl.pixel_maps[0][2, 2] = -5.0
    expl.pixel_maps[1][5, 5] = 1.0
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:4] = True
    masks = {0: mask, 1: mask, 2: np.zeros((8, 8), bool)}
    assert ex.pointing_game(expl, masks, tolerance_px=0) == pytest.approx(0.5)
    assert ex.pointing_game(expl, masks, tolerance_px=4) == pytest.approx(1.0)
    assert np.isnan(ex.pointing_game(expl, {2: masks[2]}))
