"""tools/ideal_observer.py: the d′ of a phantom bleed for an observer that knows signal and background exactly."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from viewer.synth.dataset import bleed_plan, dataset_study

TOOL = Path(__file__).resolve().parents[2] / "tools" / "ideal_observer.py"


def _tool():
    spec = importlib.util.spec_from_file_location("ideal_observer", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_dprime_renders_the_written_study_and_its_bleed_signal(capsys):
    tool = _tool()
    index = next(i for i, bleed in enumerate(bleed_plan(5, 8)) if bleed and i > 0)
    plain, _ = dataset_study(5, index, 64, "wide")
    row = tool.dprime(5, index, 64, "wide")
    again, _ = dataset_study(5, index, 64, "wide")
    np.testing.assert_array_equal(plain.hu, again.hu)  # the generator is as it was after the call
    assert row["noise_hu"] == round(plain.noise_hu, 2)
    assert row["bleeds"] and all(b["contrast_hu"] > 0 for b in row["bleeds"])
    # d' is at least what the bleed's own mask voxels carry at half their contrast, under the unblurred noise
    weakest = min(les.contrast_hu for les in plain.lesions)
    assert row["dprime"] >= 0.5 * weakest * np.sqrt(plain.mask.sum()) / (plain.noise_hu / 0.27) > 0
    assert tool.main(["--family", "wide", "--seed", "5", "--studies", "4", "--matrix", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in lines[:-1]]
    assert len(rows) == sum(bleed_plan(5, 4)[1:]) and "smallest d'" in lines[-1]
