"""How visible each bleed of a phantom set is to an ideal observer: d′ with signal and background known exactly.

Each bleed study of ``demo-data --family F --seed S --matrix M`` is rendered again in memory, every slice twice:
as the generator draws it and with its bleeds left out. The difference is the bleed's noise-free signal ``s``; the
generator then adds white noise and blurs image and noise alike with its reconstruction kernel, so an observer that
knows ``s`` and the normal slices exactly (and undoes the blur) detects the bleed with d′ = ‖s‖ / σ₀, σ₀ being the
noise's standard deviation before the blur. No observer reading the written slices does better; one that must
search the whole head, or tell a bleed from the anatomy, does worse. A miss at a large d′ is the model's, not the
phantom's.

    python tools/ideal_observer.py --family wide --seed 602 --studies 100 --matrix 256

prints one JSON line per bleed study (its index, patient ID, d′, the noise and kernel, the slice thickness and its
bleeds) and then the smallest and median d′. It wraps two private functions of :mod:`viewer.synth.study` for the
duration of a call, and draws exactly the random numbers the generator draws, so the studies are the written ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from viewer.synth import study as study_module  # noqa: E402
from viewer.synth.dataset import bleed_plan, dataset_study  # noqa: E402
from viewer.synth.render import NOISE_GAIN  # noqa: E402


@dataclass
class _Record:
    signal_energy: float = 0.0
    noise_hu: float = 0.0
    passes: int = 0


@contextmanager
def _recording() -> Iterator[_Record]:
    """While open, the generator's slices also render without their bleeds, and the noise it adds is noted."""
    record = _Record()
    render, reconstruct = study_module._render_slab, study_module.reconstruct

    def render_both(renderers, k, weights):
        out, box = render(renderers, k, weights)
        bleeds = [r.bleeds for r in renderers]
        try:
            for r in renderers:
                r.bleeds = []
            normal, _ = render(renderers, k, np.zeros((0, *weights.shape[1:]), weights.dtype))
        finally:
            for r, b in zip(renderers, bleeds, strict=True):
                r.bleeds = b
        diff = out.astype(np.float64) - normal
        record.signal_energy += float((diff * diff).sum())
        return out, box

    def noted(img, rng, sigma, passes):
        record.noise_hu, record.passes = float(sigma), int(passes)
        return reconstruct(img, rng, sigma, passes)

    study_module._render_slab, study_module.reconstruct = render_both, noted
    try:
        yield record
    finally:
        study_module._render_slab, study_module.reconstruct = render, reconstruct


def dprime(seed: int, index: int, matrix: int, family: str) -> dict[str, object]:
    """Study ``index`` of the set: its ideal-observer d′ and what decides it."""
    with _recording() as rec:
        study, meta = dataset_study(seed, index, matrix, family)
    sigma0 = rec.noise_hu / NOISE_GAIN[rec.passes] if rec.passes else rec.noise_hu
    return {
        "index": index,
        "patient_id": meta.patient_id,
        "dprime": round(float(np.sqrt(rec.signal_energy)) / sigma0, 2) if sigma0 > 0 else float("inf"),
        "noise_hu": round(rec.noise_hu, 2),
        "kernel_passes": rec.passes,
        "slice_mm": float(study.spacing[0]),
        "bleeds": [
            {"kind": les.kind, "volume_ml": round(les.volume_ml, 3), "contrast_hu": round(les.contrast_hu, 1)}
            for les in study.lesions
        ],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="classic")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--studies", type=int, required=True)
    p.add_argument("--matrix", type=int, default=512)
    args = p.parse_args(argv)
    values = []
    for index, bleed in enumerate(bleed_plan(args.seed, args.studies)):
        if bleed and index > 0:  # study 0 is the demo's obvious haematoma, in every set
            row = dprime(args.seed, index, args.matrix, args.family)
            values.append(float(row["dprime"]))
            print(json.dumps(row), flush=True)
    if values:
        print(
            f"{len(values)} bleed studies: smallest d' {min(values):.1f}, median {statistics.median(values):.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
