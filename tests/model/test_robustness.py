"""Robustness evaluation: each acquisition change on a tiny volume (shape, spacing, labels carried, determinism),
the DICOM round trip through the viewer's loader, the table and the card, and ``evaluate --robustness`` end to end
with the shipped model."""

from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from viewer.cli import main
from viewer.dicom.geometry import normal_from_orientation, tilt_angle
from viewer.errors import ViewerError
from viewer.model.card import card_to_markdown, default_model_paths, read_card
from viewer.model.explanations import analyse_sequence
from viewer.model.perturb import (
    NotMeasurable,
    Sample,
    add_noise,
    change_fov,
    crop_or_pad,
    drop_slices,
    every_nth,
    gantry_tilt,
    offset_hu,
    random_fraction,
    resample_matrix,
    shift_slices,
    thicken,
    visible_slices,
)
from viewer.model.preprocess import AIR_HU, Preprocessor
from viewer.model.robustness import (
    GOAL_MAX_DROP,
    Condition,
    Prediction,
    RobustnessReport,
    _rng,
    default_conditions,
    predict,
    select_conditions,
)
from viewer.model.robustness_table import format_table
from viewer.model.roundtrip import through_dicom
from viewer.model.weights import load_weights
from viewer.synth.dataset import dataset_study, write_phantom_dataset
from viewer.synth.writer import axial_geometry

N, SIZE, DZ, PX = 6, 17, 2.5, 2.0


def _sample(labels: tuple[int, ...] = (0, 0, 1, 1, 0, 0), rows: slice = slice(7, 10)) -> Sample:
    """6 slices of 17² at 2.5 mm × 2 mm: integer HU that differ per slice, row and column, and a 3×3 bleed
    (36 mm², above the 3 mm² a visible slice needs) at ``rows`` of each labelled slice."""
    z, y, x = np.meshgrid(np.arange(N), np.arange(SIZE), np.arange(SIZE), indexing="ij")
    hu = (100 * z + 3 * y + x).astype(np.float32)
    mask = np.zeros(hu.shape, dtype=bool)
    for k, lab in enumerate(labels):
        if lab:
            mask[k, rows, 7:10] = True
    positions, orientation = axial_geometry(N, DZ, (PX, PX), SIZE, origin=(-16.0, -16.0, 10.0))
    return Sample(
        hu, (DZ, PX, PX), positions, orientation, DZ, int(any(labels)), np.array(labels, np.uint8), mask
    )


# ---------------------------------------------------------------------------------------------------------------
# Intensity


def test_noise_is_seeded_gaussian_and_leaves_the_truth_alone():
    s = _sample()
    a = add_noise(s, 5.0, np.random.default_rng(1))
    b = add_noise(s, 5.0, np.random.default_rng(1))
    c = add_noise(s, 5.0, np.random.default_rng(2))
    assert a.hu.shape == s.hu.shape and a.hu.dtype == np.float32
    np.testing.assert_array_equal(a.hu, b.hu)
    assert not np.array_equal(a.hu, c.hu)
    assert np.std(a.hu - s.hu) == pytest.approx(5.0, rel=0.1)
    assert a.slice_labels is s.slice_labels and a.mask is s.mask and a.spacing == s.spacing
    assert s.hu[1, 2, 3] == 100 + 6 + 3  # the source is not changed
    assert add_noise(s, 0.0, np.random.default_rng(1)) is s


def test_offset_shifts_every_voxel():
    s = _sample()
    np.testing.assert_array_equal(offset_hu(s, -10.0).hu, s.hu - 10)
    assert offset_hu(s, 0.0) is s


# ---------------------------------------------------------------------------------------------------------------
# Along the slices


def test_thicker_slabs_average_and_are_positive_when_any_source_slice_was():
    s = _sample(labels=(0, 1, 0, 0, 0, 0))
    thick = thicken(s, 5.0)
    assert thick.hu.shape == (3, SIZE, SIZE)
    assert thick.spacing == (5.0, PX, PX) and thick.thickness == 5.0
    np.testing.assert_allclose(thick.hu[1], (s.hu[2] + s.hu[3]) / 2)
    np.testing.assert_array_equal(thick.slice_labels, [1, 0, 0])
    np.testing.assert_array_equal(thick.mask[0], s.mask[1])
    np.testing.assert_allclose(thick.positions[0], s.positions[:2].mean(0))
    assert thick.label == 1
    ten = thicken(s, 10.0)  # 4 slices a slab: the last slab holds the 2 left over
    assert ten.hu.shape[0] == 2 and ten.spacing[0] == 10.0
    np.testing.assert_allclose(ten.hu[1], s.hu[4:].mean(0))
    np.testing.assert_array_equal(ten.slice_labels, [1, 0])


def test_thickness_below_the_source_is_not_measurable_and_the_source_thickness_is_the_source():
    s = _sample()
    with pytest.raises(NotMeasurable, match="thinner than the series' 2.5 mm"):
        thicken(s, 1.25)
    with pytest.raises(NotMeasurable, match="do not make"):
        thicken(s, 6.0)
    assert thicken(s, 2.5) is s


def test_missing_slices_keep_true_positions_and_take_their_labels_with_them():
    s = _sample(labels=(0, 0, 1, 0, 0, 0))
    np.testing.assert_array_equal(every_nth(25, 10), [9, 19])
    dropped = drop_slices(s, every_nth(N, 3))  # slices 2 and 5
    assert dropped.hu.shape[0] == 4
    np.testing.assert_array_equal(dropped.hu, s.hu[[0, 1, 3, 4]])
    np.testing.assert_array_equal(dropped.positions, s.positions[[0, 1, 3, 4]])  # the gap stays
    assert dropped.spacing[0] == DZ  # the loader's median step, not the mean
    np.testing.assert_array_equal(dropped.slice_labels, [0, 0, 0, 0])
    assert dropped.label == 0  # the only bleed slice is gone
    a = random_fraction(40, 0.1, np.random.default_rng(3))
    np.testing.assert_array_equal(a, random_fraction(40, 0.1, np.random.default_rng(3)))
    assert len(a) == 4 and len(set(a.tolist())) == 4


def _tilt_sample() -> Sample:
    """11 slices of 33² at 5 mm × 2 mm: HU vary along z only, a bleed block in the anterior rows of slice 5."""
    n, size = 11, 33
    hu = np.repeat(np.arange(n, dtype=np.float32)[:, None, None] * 10, size, 1).repeat(size, 2)
    mask = np.zeros(hu.shape, dtype=bool)
    mask[5, 2:6, 14:19] = True  # 80 mm², 22–28 mm in front of the centre
    positions, orientation = axial_geometry(n, 5.0, (2.0, 2.0), size)
    labels = mask.any(axis=(1, 2)).astype(np.uint8)
    return Sample(hu, (5.0, 2.0, 2.0), positions, orientation, 5.0, 1, labels, mask)


def test_gantry_tilt_cuts_sheared_tilted_slices_and_recomputes_the_labels_from_the_mask():
    s = _tilt_sample()
    tilted = gantry_tilt(s, 15.0)
    t = math.radians(15.0)
    assert tilted.hu.shape == s.hu.shape
    np.testing.assert_allclose(tilted.orientation, (1, 0, 0, 0, math.cos(t), -math.sin(t)), atol=1e-12)
    assert tilted.spacing[0] == pytest.approx(5.0 * math.cos(t))
    assert tilt_angle(tilted.positions, tilted.orientation) == pytest.approx(15.0, abs=0.01)
    # The image centre stays on the table axis: the centre pixel is the source's own.
    np.testing.assert_allclose(tilted.hu[:, 16, 16], s.hu[:, 16, 16], atol=1e-4)
    # Anterior rows now lie higher: their HU come from slices above, and the bleed in front moved down a slice.
    assert tilted.hu[5, 4, 16] > s.hu[5, 4, 16] + 5
    np.testing.assert_array_equal(tilted.slice_labels, visible_slices(tilted.mask, 4.0))
    assert tilted.slice_labels.sum() >= 1 and tilted.slice_labels[5] == 0
    assert np.flatnonzero(tilted.slice_labels).max() < 5
    assert tilted.label == 1
    # Beyond the scanned range there is nothing: air.
    assert tilted.hu[0, -1, 16] == AIR_HU
    assert gantry_tilt(s, 0.0) is s
    with pytest.raises(NotMeasurable, match="already tilted"):
        gantry_tilt(tilted, 15.0)


def test_half_slice_resampling_blends_neighbours_and_their_masks():
    s = _sample(labels=(0, 1, 0, 0, 0, 0))
    half = shift_slices(s, 0.5)
    assert half.hu.shape == (N - 1, SIZE, SIZE) and half.spacing == s.spacing
    np.testing.assert_allclose(half.hu[2], (s.hu[2] + s.hu[3]) / 2)
    np.testing.assert_allclose(half.positions[0], (s.positions[0] + s.positions[1]) / 2)
    np.testing.assert_array_equal(half.slice_labels, [1, 1, 0, 0, 0])  # half of the bleed slice in each
    quarter = shift_slices(s, 0.25)
    np.testing.assert_array_equal(quarter.slice_labels, [0, 1, 0, 0, 0])
    assert shift_slices(s, 0.0) is s


def test_a_tilt_that_moves_a_thin_bleed_out_of_every_slice_leaves_a_normal_series():
    s = _tilt_sample()
    thin = np.zeros_like(s.mask)
    thin[5, 3, 16] = True  # 4 mm²: visible at the source; smeared below 3 mm² on any tilted slice
    s = replace(s, mask=thin, slice_labels=thin.any(axis=(1, 2)).astype(np.uint8))
    tilted = gantry_tilt(s, 15.0)
    assert tilted.slice_labels.sum() == 0 and tilted.label == 0


# ---------------------------------------------------------------------------------------------------------------
# In-plane


def test_matrix_resampling_keeps_the_field_of_view_and_the_labels():
    s = _sample()
    half = resample_matrix(s, 8)
    assert half.hu.shape == (N, 8, 8) and half.mask.shape == (N, 8, 8)
    assert half.spacing == (DZ, PX * SIZE / 8, PX * SIZE / 8)
    assert half.fov_mm == pytest.approx(s.fov_mm)
    # The outer edge of the image stays where it was.
    edge = s.positions - s.col_dir * PX / 2 - s.row_dir * PX / 2
    np.testing.assert_allclose(
        half.positions - half.col_dir * half.spacing[1] / 2 - half.row_dir * half.spacing[2] / 2, edge
    )
    np.testing.assert_array_equal(half.slice_labels, s.slice_labels)
    double = resample_matrix(s, 2 * SIZE)  # the mask follows: the same bleed area in mm² on the finer grid
    area = double.mask.sum(axis=(1, 2)) * double.spacing[1] * double.spacing[2]
    np.testing.assert_allclose(area, s.mask.sum(axis=(1, 2)) * PX * PX, atol=8.0)
    assert half.hu[0].mean() == pytest.approx(s.hu[0].mean(), abs=0.5)
    assert resample_matrix(s, SIZE) is s


def test_padding_keeps_labels_and_cropping_recomputes_them():
    s = _sample()
    padded = crop_or_pad(s, 50.0)  # 25 px of 2 mm: 4 px of air each side
    assert padded.hu.shape == (N, 25, 25)
    np.testing.assert_array_equal(padded.hu[:, 4:21, 4:21], s.hu)
    assert (padded.hu[:, :4] == AIR_HU).all()
    np.testing.assert_allclose(padded.positions, s.positions - 4 * PX * (s.col_dir + s.row_dir))
    np.testing.assert_array_equal(padded.slice_labels, s.slice_labels)
    cropped = crop_or_pad(s, 10.0)  # 5 px about the centre: the bleed at rows/cols 7–9 stays inside
    np.testing.assert_array_equal(cropped.hu, s.hu[:, 6:11, 6:11])
    np.testing.assert_array_equal(cropped.slice_labels, s.slice_labels)
    off_centre = _sample(rows=slice(0, 3))
    cut = crop_or_pad(off_centre, 10.0)
    assert not cut.mask.any() and cut.slice_labels.sum() == 0 and cut.label == 0


def test_field_of_view_change_resamples_back_to_the_matrix():
    s = _sample()
    wider = change_fov(s, 68.0)
    assert wider.hu.shape == s.hu.shape
    assert wider.spacing[1] == pytest.approx(68.0 / SIZE) and wider.fov_mm == pytest.approx(68.0)
    np.testing.assert_array_equal(wider.slice_labels, s.slice_labels)
    assert change_fov(s, s.fov_mm) is s


# ---------------------------------------------------------------------------------------------------------------
# Through DICOM and the viewer's loader


def test_round_trip_gives_back_the_same_series(tmp_path: Path):
    s = _sample()
    back = through_dicom(s, tmp_path)
    np.testing.assert_array_equal(back.hu, s.hu)
    np.testing.assert_allclose(back.positions, s.positions, atol=1e-3)
    assert back.spacing == pytest.approx(s.spacing)
    np.testing.assert_array_equal(back.slice_labels, s.slice_labels)
    np.testing.assert_array_equal(back.mask, s.mask)


def test_feet_first_reaches_the_model_from_the_vertex_with_its_labels(tmp_path: Path):
    s = _sample(labels=(1, 0, 0, 0, 0, 0))
    back = through_dicom(s, tmp_path, feet_first=True)
    normal = normal_from_orientation(back.orientation)
    assert normal @ normal_from_orientation(s.orientation) == pytest.approx(-1.0)
    np.testing.assert_array_equal(back.hu, s.hu[::-1, :, ::-1])
    np.testing.assert_array_equal(back.slice_labels, [0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(back.mask, s.mask[::-1, :, ::-1])
    # Every voxel keeps its place in the patient.
    np.testing.assert_allclose(back.positions[0] + back.row_dir * (SIZE - 1) * PX, s.positions[-1], atol=1e-3)


def test_missing_slices_and_tilt_through_the_loader(tmp_path: Path):
    s = _sample(labels=(0, 0, 0, 1, 0, 0))
    gap = through_dicom(drop_slices(s, [2]), tmp_path / "gap")
    assert gap.hu.shape[0] == 5 and gap.spacing[0] == pytest.approx(DZ)
    np.testing.assert_array_equal(gap.slice_labels, [0, 0, 1, 0, 0])
    tilted = gantry_tilt(_tilt_sample(), 15.0)
    back = through_dicom(replace(tilted, hu=np.rint(tilted.hu)), tmp_path / "tilt")
    np.testing.assert_allclose(back.orientation, tilted.orientation, atol=1e-6)
    assert back.spacing[0] == pytest.approx(tilted.spacing[0], abs=1e-3)
    np.testing.assert_array_equal(back.slice_labels, tilted.slice_labels)


# ---------------------------------------------------------------------------------------------------------------
# The report and the table


def _pred(uid: str, label: int, p: float, unchanged: bool = False) -> Prediction:
    return Prediction(uid, label, p, np.array([label], np.uint8), np.array([p]), unchanged=unchanged)


def test_rows_compare_with_the_baseline_of_the_same_series_and_mark_the_goal():
    base = [_pred("a", 1, 0.9), _pred("b", 1, 0.6), _pred("c", 0, 0.7), _pred("d", 0, 0.1)]
    conditions = [
        Condition("worse", "worse", lambda s, _r: s, goal_max_drop=GOAL_MAX_DROP),
        Condition("subset", "subset", lambda s, _r: s),
        Condition("never", "never", lambda s, _r: s, goal_max_drop=GOAL_MAX_DROP),
        Condition("same", "same", lambda s, _r: s),
    ]
    report = RobustnessReport(
        0.5,
        conditions,
        base,
        {
            "worse": [_pred("a", 1, 0.9), _pred("b", 1, 0.05), _pred("c", 0, 0.7), _pred("d", 0, 0.1)],
            "subset": [_pred("a", 1, 0.9), _pred("c", 0, 0.7)],
            "never": [],
            "same": [_pred(p.series_uid, p.label, p.probability, unchanged=True) for p in base],
        },
        {"subset": [("b", "too thin"), ("d", "too thin")], "never": [("a", "x"), ("b", "x")]},
        {},
        [],
        "5 mm slices",
    )
    rows = {r["key"]: r for r in report.rows}
    assert rows["baseline"]["study_auroc"] == 0.75
    assert rows["worse"]["study_auroc"] == 0.5 and rows["worse"]["delta_auroc"] == pytest.approx(-0.25)
    assert rows["worse"]["meets_goal"] is False
    assert rows["worse"]["sensitivity"] == 0.5 and rows["worse"]["specificity"] == 0.5
    assert rows["subset"]["delta_auroc"] == 0.0  # a and c score the same as at baseline
    assert "2 series not measurable (too thin)" in rows["subset"]["note"]
    assert rows["never"]["study_auroc"] is None and rows["never"]["meets_goal"] is None
    assert rows["never"]["note"] == "not measurable: x"
    assert "identical to unperturbed" in rows["same"]["note"] and "5 mm slices" in rows["same"]["note"]
    table = format_table(report.rows)
    assert "misses (drop ≤ 0.02)" in table and "not measurable" in table and "−0.2500" in table
    json.dumps(report.to_dict(), allow_nan=False)


def test_conditions_are_chosen_by_key_and_seeded_per_series_and_condition():
    keys = [c.key for c in default_conditions()]
    assert len(keys) == len(set(keys)) == 16
    assert [c.key for c in select_conditions(["feet_first", "noise_5"])] == ["noise_5", "feet_first"]
    with pytest.raises(ViewerError, match="noise_7"):
        select_conditions(["noise_7"])
    goals = {c.key for c in default_conditions() if c.goal_max_drop is not None}
    assert goals == {"noise_5", "offset_-10", "offset_+10"}
    draw = _rng(0, "1.2.3", "noise_5").standard_normal(3)
    np.testing.assert_array_equal(draw, _rng(0, "1.2.3", "noise_5").standard_normal(3))
    assert not np.array_equal(draw, _rng(0, "1.2.3", "noise_10").standard_normal(3))
    assert not np.array_equal(draw, _rng(0, "1.2.4", "noise_5").standard_normal(3))


# ---------------------------------------------------------------------------------------------------------------
# With the shipped model


@pytest.fixture(scope="module")
def shipped():
    return load_weights(default_model_paths().weights)


def test_the_cheap_forward_gives_the_analysis_probabilities(shipped):
    model, _ = shipped
    study = dataset_study(0, 0, matrix=128)[0]
    sample = Sample(study.hu, study.spacing, np.zeros((study.n_slices, 3)), (1, 0, 0, 0, 1, 0), 5.0, 1)
    prep = Preprocessor.from_config(model.config)
    fast = predict(model, prep, sample)
    full = analyse_sequence(model, prep(study.hu, study.spacing)).output
    assert fast.probability == pytest.approx(float(full.study_probability[0]), abs=1e-6)
    np.testing.assert_allclose(fast.slice_probabilities, full.slice_probabilities[0].numpy(), atol=1e-6)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("robustness") / "data"
    write_phantom_dataset(root, studies=4, seed=7, matrix=128)
    return root


def test_evaluate_robustness_prints_the_table_and_updates_a_card(
    folder: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    paths = default_model_paths()
    weights = tmp_path / paths.weights.name
    for source in paths.weights.parent.glob(paths.weights.name.removesuffix(".safetensors") + ".*"):
        shutil.copy(source, tmp_path / source.name)
    out = tmp_path / "rob.json"
    args = ["evaluate", "--robustness", "--conditions", "noise_5,thickness_2.5,thickness_5,feet_first"]
    args += ["--model", str(weights), "--data", str(folder), "--json", str(out), "--update-card", "-q"]
    monkeypatch.setattr(sys, "argv", ["gru-viewer", *args])
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "source series: 5 mm slices, 128×128 matrix" in printed
    assert "not measurable" in printed and ("meets (drop" in printed or "misses (drop" in printed)
    rows = {r["key"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["baseline", "noise_5", "thickness_2.5", "thickness_5", "feet_first"]
    assert rows["baseline"]["studies"] == 4 and rows["baseline"]["studies_with_bleed"] == 2
    assert rows["thickness_2.5"]["study_auroc"] is None
    assert "2.5 mm is thinner than the series' 5 mm slices" in rows["thickness_2.5"]["note"]
    assert (
        rows["thickness_5"]["delta_auroc"] == 0.0
        and "identical to unperturbed" in rows["thickness_5"]["note"]
    )
    assert "4 of 4 series reached the model vertex first" in rows["feet_first"]["note"]
    assert rows["noise_5"]["meets_goal"] is (rows["noise_5"]["delta_auroc"] >= -GOAL_MAX_DROP)
    card = read_card(tmp_path / paths.card.name)
    assert card.robustness["rows"] == list(rows.values())
    assert card.robustness["command"].startswith("gru-viewer evaluate --robustness")
    assert "--model FILE --data DIR" in card.robustness["command"]
    assert card.metrics == read_card(paths.card).metrics  # the ordinary metrics stay as they were
    markdown = (tmp_path / paths.card.name.replace(".json", ".md")).read_text()
    assert markdown == card_to_markdown(card)
    assert "## Robustness" in markdown and "| feet first |" in markdown
    assert card.robustness["data"] != read_card(paths.card).robustness.get("data")  # the copy took this run's


def test_the_help_names_every_condition(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(c.key in text for c in default_conditions())


def test_unknown_condition_is_a_usage_error_before_any_work(folder: Path, capsys):
    args = [
        "evaluate",
        "--robustness",
        "--conditions",
        "noise_7",
        "--model",
        str(default_model_paths().weights),
    ]
    assert main([*args, "--data", str(folder), "-q"]) == 1
    assert "noise_7" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_condition_runs_on_a_small_folder(folder: Path, tmp_path: Path):
    out = tmp_path / "all.json"
    weights = default_model_paths().weights
    assert (
        main(
            [
                "evaluate",
                "--robustness",
                "--model",
                str(weights),
                "--data",
                str(folder),
                "--json",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    rows = {r["key"]: r for r in json.loads(out.read_text())["rows"]}
    assert len(rows) == 17
    assert all(r["study_auroc"] is not None for k, r in rows.items() if k != "thickness_2.5")
    assert "resizes every slice" in rows["matrix_256"]["note"] and "tilted 15°" in rows["tilt_15"]["note"]


def test_a_thin_source_gives_the_thickness_rows_beside_the_main_table(
    folder: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    """A 5 mm folder cannot show 2.5 mm; a thin-slice folder can, and the card keeps both tables."""
    thin = tmp_path / "thin"
    write_phantom_dataset(thin, studies=2, seed=11, matrix=64, family="wide", slice_mm=1.25)
    paths = default_model_paths()
    weights = tmp_path / paths.weights.name
    for source in paths.weights.parent.glob(paths.weights.name.removesuffix(".safetensors") + ".*"):
        shutil.copy(source, tmp_path / source.name)
    main_table = read_card(paths.card).robustness
    args = ["evaluate", "--robustness", "--thin-source", "--model", str(weights), "--data", str(thin)]
    monkeypatch.setattr(sys, "argv", ["gru-viewer", *args, "--update-card", "-q"])
    assert main([*args, "--update-card", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "source series: 1.25 mm slices" in printed
    card = read_card(tmp_path / paths.card.name)
    thin_rows = {r["key"]: r for r in card.robustness["thin_source"]["rows"]}
    assert list(thin_rows) == ["baseline", "thickness_2.5", "thickness_5", "thickness_10"]
    assert all(thin_rows[k]["study_auroc"] is not None for k in ("thickness_2.5", "thickness_10"))
    assert card.robustness["rows"] == main_table["rows"]  # the main table stays
    markdown = card_to_markdown(card)
    assert "### Slice thickness from a thin source" in markdown and "| slice thickness 2.5 mm |" in markdown
    assert main([*args[:2], "--conditions", "noise_5", *args[2:], "-q"]) == 1  # only thickness rows
    assert "thickness rows only" in capsys.readouterr().err
