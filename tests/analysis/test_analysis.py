"""The headless analysis: one series in, an AnalysisResult out; cancel, CPU fallback and the analyze command."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from viewer.analysis import run as analysis_run
from viewer.analysis.batch import analysable, analyze_paths
from viewer.analysis.model_cache import load_model
from viewer.analysis.result import GATE_KEYS, MATRIX_KEYS, NOT_ASSESSED
from viewer.analysis.run import AnalysisOptions, analyze_volume
from viewer.analysis.session import AnalysisSession
from viewer.cli import main
from viewer.dicom.index import scan
from viewer.dicom.readers import load_stack
from viewer.errors import CancelledError, ViewerError
from viewer.model.intended_use import MAX_SLICES, MIN_MATRIX_PX
from viewer.synth.dataset import write_phantom_dataset


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("analysis")
    write_phantom_dataset(root / "data", studies=2, seed=21, matrix=64)
    return root / "data"


@pytest.fixture(scope="module")
def volume(study: Path):
    stack = next(scan([str(study)]).stacks())
    return load_stack(stack)


def test_result_covers_every_slice_and_names_its_series(volume, model_file: Path):
    model, card = load_model(model_file)
    steps: list[tuple[int, int, str]] = []
    session = AnalysisSession(volume, model, card, progress=lambda d, t, s: steps.append((d, t, s)))
    result = session.result
    n = volume.array.shape[0]
    assert 0.0 <= result.probability <= 1.0
    assert result.positive == (result.probability >= card.operating_threshold)
    assert result.slice_probabilities.shape == (n,)
    assert set(result.gates) >= set(GATE_KEYS) and all(result.gates[k].shape == (n,) for k in GATE_KEYS)
    assert all(result.gate_matrices[k].shape == (model.config.hidden_size, n) for k in MATRIX_KEYS)
    assert np.all(np.isfinite(result.hidden_saliency["combined"]))
    assert len(result.key_slices) == 4 and len(set(result.key_slices)) == 4
    top_four = np.sort(result.slice_probabilities)[::-1][:4]
    assert result.slice_probabilities[result.key_slices] == pytest.approx(top_four)  # largest shares first
    for k in result.key_slices:
        assert result.pixel_saliency[k].shape == volume.array.shape[1:]
    other = next(i for i in range(n) if i not in result.key_slices)
    assert session.pixel_map(other).shape == volume.array.shape[1:]
    assert session.pixel_map(n) is None
    assert result.matches(volume) and result.warnings == []
    assert result.model.sha256 == card.sha256 and result.device.startswith("CPU")
    assert steps[-1][0] == steps[-1][1]
    json.dumps(result.to_dict())


def test_result_refuses_another_series(study: Path, volume, model_file: Path):
    model, card = load_model(model_file)
    result = analyze_volume(volume, model, card)
    stacks = list(scan([str(study)]).stacks())
    other = load_stack(next(s for s in stacks if s.uid != volume.stack_uid))
    assert not result.matches(other)


def test_cancel_stops_the_analysis(volume, model_file: Path):
    model, card = load_model(model_file)
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(CancelledError):
        analyze_volume(volume, model, card, cancel=cancel)


def test_gpu_failure_falls_back_to_cpu(volume, model_file: Path, gpu_out_of_memory):
    model, card = load_model(model_file)
    result = analyze_volume(volume, model, card, options=AnalysisOptions(device="auto"))
    assert result.device.startswith("CPU")
    assert "out of memory" in result.device_notice and "CPU" in result.device_notice


def test_other_errors_are_not_hidden_by_the_fallback(volume, model_file: Path, monkeypatch):
    model, card = load_model(model_file)

    def broken(m, device):
        raise ValueError("a bug, not a device failure")

    monkeypatch.setattr(analysis_run, "pick_device", lambda pref: torch.device("cuda"))
    monkeypatch.setattr(analysis_run, "place", broken)
    with pytest.raises(ValueError, match="a bug"):
        analyze_volume(volume, model, card)


def test_intended_use_warnings_reach_the_result(volume, model_file: Path):
    model, card = load_model(model_file)
    volume.modality = "MR"
    try:
        result = analyze_volume(volume, model, card)
    finally:
        volume.modality = "CT"
    assert [w.code for w in result.warnings] == ["modality"]
    assert not result.assessed and result.finding == NOT_ASSESSED
    doc = result.to_dict()
    assert doc["assessed"] is False and doc["positive"] is None and doc["finding"] == NOT_ASSESSED
    assert doc["warnings"][0]["disqualifying"] is True


def test_an_in_scope_series_keeps_its_finding(volume, model_file: Path):
    model, card = load_model(model_file)
    result = analyze_volume(volume, model, card)
    assert result.warnings == [] and result.assessed
    assert result.finding == ("Bleed suspected" if result.positive else "No bleed detected")
    assert result.to_dict()["assessed"] is True and result.to_dict()["positive"] is result.positive


def test_the_result_carries_what_the_cards_evaluations_missed_most(volume, model_file: Path):
    model, card = load_model(model_file)
    assert analyze_volume(volume, model, card).known_misses == []  # the test card has no evaluations
    rows = [{"group": "volume < 0.5 ml", "what": "sensitivity", "series": 10, "correct": 4}]
    evaluated = replace(card, evaluation={"by_group": rows}, evaluations=[{"by_group": rows}])
    missed = analyze_volume(volume, model, evaluated).known_misses
    assert [(g.group, g.series, g.correct) for g in missed] == [("volume < 0.5 ml", 20, 8)]


def test_a_recentred_series_says_so_and_keeps_its_finding(volume, model_file: Path):
    from viewer.model.hu_centring import soft_tissue_median

    model, card = load_model(model_file)
    median = soft_tissue_median(volume.array)
    model.config = replace(model.config, hu_reference=median + 10.0, hu_tolerance=4.0)
    try:
        result = analyze_volume(volume, model, card)
    finally:
        model.config = replace(model.config, hu_reference=None, hu_tolerance=0.0)
    assert [w.code for w in result.warnings] == ["hu_offset"] and result.assessed
    assert "10 HU below" in result.warnings[0].message and "shifted by +6 HU" in result.warnings[0].message


@pytest.mark.parametrize(
    "shape", [(3000, 1, 1), (MAX_SLICES + 1, MIN_MATRIX_PX, MIN_MATRIX_PX), (30, 32, 512)]
)
def test_stacks_outside_the_size_limits_are_refused_before_preprocessing(
    volume, model_file: Path, monkeypatch, shape
):
    model, card = load_model(model_file)

    def no_preprocessing(*args, **kwargs):
        raise AssertionError("preprocessed a refused stack")

    monkeypatch.setattr(analysis_run.Preprocessor, "from_config", no_preprocessing)
    odd = replace(volume, array=np.zeros(shape, np.float32))
    started = time.perf_counter()
    with pytest.raises(ViewerError, match="Cannot analyse the series") as refused:
        analyze_volume(odd, model, card)
    assert time.perf_counter() - started < 1.0
    assert "pixels" in refused.value.why or "slices" in refused.value.why


def test_missing_model_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ViewerError, match="No model installed"):
        load_model(tmp_path / "absent.safetensors")


def test_analyze_command_writes_json(study: Path, model_file: Path, tmp_path: Path, capsys):
    out = tmp_path / "r.json"
    assert main(["analyze", str(study), "--model", str(model_file), "--json", str(out), "-q"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("probability" in line and "threshold" in line for line in lines)
    doc = json.loads(out.read_text())
    assert len(doc["results"]) == 2
    assert all(r["assessed"] is True and r["finding"] != NOT_ASSESSED for r in doc["results"])
    first = doc["results"][0]
    report = analyze_paths([study], series_uid=first["series"]["series_uid"], model_path=model_file)
    assert report.analysed[0].result.probability == pytest.approx(first["probability"], abs=1e-6)


def test_analyze_command_with_nothing_to_analyse(tmp_path: Path, model_file: Path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["analyze", str(tmp_path / "empty"), "--model", str(model_file), "-q"]) == 3
    assert "nothing could be analysed" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "empty"), "--series", "1.2.3", "--model", str(model_file)]) == 1


def test_analyze_command_withholds_the_finding_outside_intended_use(
    study: Path, model_file: Path, tmp_path: Path, capsys
):
    """Three slices of a head (15 mm) are far below a head's coverage: "not assessed", no probability, exit 4."""
    series = next(scan([str(study)]).stacks())
    short = tmp_path / "short"
    short.mkdir()
    for path in sorted(series.files)[:3]:
        shutil.copy(path, short / Path(path).name)
    out = tmp_path / "short.json"
    assert main(["analyze", str(short), "--model", str(model_file), "--json", str(out), "-q"]) == 4
    captured = capsys.readouterr()
    (line,) = captured.out.strip().splitlines()
    assert "not assessed — outside the model's intended use: The series covers 15 mm in 3 slices" in line
    assert "probability" not in line and "Bleed suspected" not in line and "No bleed detected" not in line
    assert "every series is outside the model's intended use" in captured.err
    (result,) = json.loads(out.read_text())["results"]
    assert result["assessed"] is False and result["positive"] is None and result["finding"] == NOT_ASSESSED
    assert [w["code"] for w in result["warnings"] if w["disqualifying"]] == ["coverage"]


def test_help_documents_the_not_assessed_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert (
        "4    analyze: every analysed series is outside the model's intended use" in capsys.readouterr().out
    )


def test_a_batch_refuses_an_out_of_range_stack_from_its_headers(study: Path):
    """1 × 1 pixels in 3000 slices is skipped before a pixel is loaded (the headers say enough)."""
    stack = next(scan([str(study)]).stacks())
    tiny = replace(stack.slices[0], header=replace(stack.first, rows=1, columns=1))
    huge = replace(stack, slices=[tiny] * 3000)
    assert huge.n_slices == 3000 and huge.rows == huge.columns == 1
    assert "1 × 1 pixels" in analysable(huge)
    assert analysable(stack) == ""
