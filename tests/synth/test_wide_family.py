"""The wide phantom family: every bleed kind where it belongs, varied acquisitions, the classic family untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from viewer.model.workflow import describe
from viewer.synth.acquisition import WIDE_SLICE_MM, Motion, apply_motion, draw_wide
from viewer.synth.anatomy import Head
from viewer.synth.bleeds import KINDS, make_wide_bleed
from viewer.synth.dataset import dataset_study, write_phantom_dataset
from viewer.synth.render import Streak, streak_pattern
from viewer.synth.study import PhantomStudy, generate_study

MATRIX = 128


def _study(seed: int, kind: str, **kw: object) -> PhantomStudy:
    return generate_study(np.random.default_rng(seed), matrix=MATRIX, family="wide", kinds=[kind], **kw)


def _near(mask: np.ndarray, where: np.ndarray, px: int) -> np.ndarray:
    """Mask voxels with a ``where`` pixel within ``px`` pixels in-plane."""
    grown = where.copy()
    for _ in range(px):
        g = grown.copy()
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        g[:, :, 1:] |= grown[:, :, :-1]
        g[:, :, :-1] |= grown[:, :, 1:]
        grown = g
    return mask & grown


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_drawn_with_its_truth(kind: str) -> None:
    study = _study(11, kind, slice_mm=5.0)
    assert study.label == 1 and kind in study.kind.split("+")
    lesion = next(les for les in study.lesions if les.kind == kind)
    assert study.mask.any()
    assert np.array_equal(study.slice_labels.astype(bool), study.mask.any(axis=(1, 2)))
    assert study.slice_labels[lesion.first_slice] and study.slice_labels[lesion.last_slice]
    # Blood is denser than the brain it lies in: the mask's mean HU is above its in-cavity neighbourhood's.
    ring = _near(~study.mask & (study.hu > 15) & (study.hu < 45), study.mask, 3)
    assert float(study.hu[study.mask].mean()) > float(study.hu[ring].mean()) + 0.3 * lesion.contrast_hu


def test_extra_axial_blood_lies_against_the_inner_table() -> None:
    for seed in range(3):
        study = _study(20 + seed, "epidural", slice_mm=5.0)
        bone = study.hu > 400
        px = study.spacing[1]
        touching = _near(study.mask, bone, max(1, round(3.0 / px)))
        assert touching.sum() > 0.15 * study.mask.sum()
        assert np.array_equal(_near(study.mask, bone, round(24.0 / px)), study.mask)


def test_intraventricular_blood_is_beside_csf_not_at_the_skull() -> None:
    study = _study(31, "intraventricular", slice_mm=5.0)
    px = study.spacing[1]
    csf = (study.hu > -20) & (study.hu < 15)
    assert _near(study.mask, csf, max(1, round(8.0 / px))).sum() > 0.3 * study.mask.sum()
    assert _near(study.mask, study.hu > 400, max(1, round(6.0 / px))).sum() < 0.2 * study.mask.sum()


def test_small_faint_haematomas_are_drawn() -> None:
    rng = np.random.default_rng(5)
    head = Head(rng)
    found = []
    for _ in range(60):
        b = make_wide_bleed(rng, head, "intraparenchymal", 8.0, (-40.0, 60.0))
        if b is not None and b.contrast <= 30.0:
            found.append(b)
    assert found, "no faint haematoma in 60 draws"
    volumes = [4.0 / 3.0 * np.pi * float(np.prod(b.semi)) / 1000.0 for b in found]
    assert min(volumes) < 0.5 and all(10.0 <= b.contrast <= 30.0 for b in found)


def test_subdural_sites_include_falx_and_tentorium() -> None:
    rng = np.random.default_rng(9)
    head = Head(rng)
    sites = set()
    for _ in range(80):
        b = make_wide_bleed(rng, head, "subdural", 6.0, (-60.0, 70.0))
        if b is not None:
            sites.add(b.site)
            assert 2.0 <= b.thickness <= 10.0
    assert sites == {"convexity", "falx", "tentorium"}


@pytest.mark.parametrize("slice_mm", [0.625, 2.5, 10.0])
def test_slice_thickness_is_honoured_and_covers_the_head(slice_mm: float) -> None:
    study = generate_study(np.random.default_rng(3), matrix=64, family="wide", bleed=False, slice_mm=slice_mm)
    assert study.spacing[0] == slice_mm
    assert 120.0 < study.n_slices * slice_mm < 260.0
    assert study.label == 0 and not study.mask.any()


def test_acquisitions_vary_as_documented() -> None:
    draws = [draw_wide(np.random.default_rng(s)) for s in range(300)]
    assert {d.slice_mm for d in draws} == set(WIDE_SLICE_MM)
    fov = [d.fov_mm for d in draws]
    assert 180.0 <= min(fov) < 200.0 and 280.0 < max(fov) <= 300.0
    assert {d.smoothing_passes for d in draws} == {0, 1, 2}
    assert draws[0].sub_slabs == max(1, round(draws[0].slice_mm / 2.5))
    with pytest.raises(ValueError):
        draw_wide(np.random.default_rng(0), slice_mm=40.0)


def test_motion_ghosts_only_its_slices() -> None:
    img = np.zeros((32, 32), np.float32)
    img[10:20, 10:20] = 100.0
    motion = Motion(first=2, last=3, shift_px=(0, 4), weight=0.5)
    untouched = img.copy()
    apply_motion(untouched, motion, 1)
    assert np.array_equal(untouched, img)
    ghosted = img.copy()
    apply_motion(ghosted, motion, 2)
    assert ghosted[15, 22] == pytest.approx(50.0) and ghosted[15, 12] == pytest.approx(50.0)


def test_streaks_fade_away_from_the_skull_base() -> None:
    streaks = [Streak(u=20.0, v=5.0, angle=0.3, hu=30.0, width=1.5)]
    u = np.linspace(-60, 60, 121, dtype=np.float32)[None, :].repeat(5, 0)
    v = np.zeros_like(u) + 5.0
    base = streak_pattern(streaks, u, v, np.full_like(u, -0.6 * 68.0), 68.0)
    vertex = streak_pattern(streaks, u, v, np.full_like(u, 60.0), 68.0)
    assert base.max() > 20.0 and np.abs(vertex).max() < 0.5


def test_classic_family_cannot_draw_the_new_kinds() -> None:
    with pytest.raises(ValueError):
        generate_study(np.random.default_rng(0), matrix=64, kinds=["epidural"])
    with pytest.raises(ValueError):
        generate_study(np.random.default_rng(0), matrix=64, slice_mm=2.5)


def test_wide_dataset_records_its_family(tmp_path: Path) -> None:
    manifest = write_phantom_dataset(tmp_path / "w", studies=2, seed=4, matrix=64, family="wide")
    doc = json.loads(manifest.labels_path.read_text())
    assert doc["family"] == "wide" and manifest.family == "wide"
    text = describe(manifest.labels_path, 2, 1)
    assert "--family wide" in text and "5 mm" not in text
    _, classic_meta = dataset_study(4, 1, matrix=64)
    _, wide_meta = dataset_study(4, 1, matrix=64, family="wide")
    assert classic_meta.series_uid != wide_meta.series_uid
    with pytest.raises(ValueError):
        write_phantom_dataset(tmp_path / "x", studies=1, family="nonsense")


def test_a_set_at_one_slice_thickness_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from viewer.cli import main

    assert main(["demo-data", str(tmp_path / "t"), "--family", "wide", "--studies", "2", "--matrix", "64",
                 "--slice-mm", "2.5"]) == 0  # fmt: skip
    doc = json.loads((tmp_path / "t" / "labels.json").read_text())
    assert doc["slice_mm"] == 2.5
    assert all("2.5mm" in s["series_dir"] for s in doc["studies"])
    text = describe(tmp_path / "t" / "labels.json", 2, 1)
    assert "2.5 mm slices" in text and "--slice-mm 2.5" in text
    assert main(["demo-data", str(tmp_path / "c"), "--slice-mm", "2.5"]) == 1
    assert "wide and other families" in capsys.readouterr().err
