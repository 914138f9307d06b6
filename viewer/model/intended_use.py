"""Is this series something the model was made for? Checked before every inference.

The model was trained on axial non-contrast head CT in HU (synthetic phantoms). Each check returns a
:class:`UseWarning` in plain words. A *disqualifying* warning (not CT or not HU, coverage far below a head, a field
of view far from a head, a matrix too small, non-axial slices, values whose histogram is not a head's: too little
brain-range tissue or too much fat) means the series is outside what the model was made for: the analysis still
runs, so its plots can be studied, but the result is *not assessed* and gives no finding. An *advisory* warning
(slices somewhat thicker than the model's slabs) leaves the finding in place and is shown next to it. Each check
looks only at what the loaded series itself says; none reads patient data.

Stacks too small or too long to be worth preprocessing (:data:`MIN_MATRIX_PX`, :data:`MAX_SLICES`) are refused
before any work by :func:`size_refusal`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Limits of the checks; changing one changes what users are warned about.
MIN_MODEL_SLICES = 8
MIN_COVERAGE_MM = 60.0
MAX_TILT_DEG = 30.0
FOV_MM = (120.0, 500.0)
BRAIN_HU = (0.0, 80.0)
MIN_BRAIN_FRACTION = 0.05
#: Fat in HU and the most of it (as a share of the tissue above −500 HU) a head shows: a head CT has a few per cent
#: (scalp, orbits, partial volume at the skin), a chest, cardiac or abdominal CT far more. A heuristic; measured
#: (as :func:`check_series` samples it) on the phantoms, classic 3.5–5.0 % and wide 3.0–5.0 % (12 studies each),
#: other 5.0–12.9 %; and on the only real CT slices at hand, one each (pydicom-data): a head (693_UNCR.dcm,
#: mid-brain) 5.9 %, an abdomen (explicit_VR-UN.dcm, pancreas) 36 %, a cropped thoracic spine (pydicom's
#: CT_small.dcm) 23 %, a cropped neck (bad_sequence.dcm) 5.6 %. So 20 % sits 3.4× above the real head slice and
#: 1.5× above the most fatty phantom, 1.8× below the abdomen; no whole real series (skull base and orbits hold
#: more fat than mid-brain) nor a chest or cardiac CT has been measured.
FAT_HU = (-200.0, -30.0)
MAX_FAT_FRACTION = 0.2
#: Below air (−1000 HU) nothing is measured: scanners pad the pixels outside the scan circle with −2000, −3024 or
#: the like (a real head slice in pydicom-data has 21 % of its pixels at −3024). Those are left out of the value
#: checks, unless they are nearly all there is (MAX_PADDING_FRACTION), which is no head CT in HU.
PADDING_BELOW_HU = -1100.0
MAX_PADDING_FRACTION = 0.8
#: Slices more than this factor thicker than the model's slab get an advisory warning (the finding stands).
THICK_SLICE_FACTOR = 1.2
#: A stack with fewer pixels than this along a row or a column is refused before preprocessing.
MIN_MATRIX_PX = 64
#: A stack with more slices than this is refused before preprocessing (a head CT has a few hundred at most). Lower
#: than the loader's own limit (``viewer.dicom.readers.MAX_STACK_SLICES``, 2000, for viewing): measured, analysing
#: 2000 tiny slices peaked at 1.3 GiB and 1000 at 0.7 GiB.
MAX_SLICES = 1000


@dataclass(frozen=True)
class UseWarning:
    """One way the series falls outside the intended use: a short code, a sentence for the user, and whether it
    withholds the finding (``disqualifying``) or only qualifies it (advisory)."""

    code: str
    message: str
    disqualifying: bool = True


def is_assessable(warnings: Sequence[UseWarning]) -> bool:
    """True when none of ``warnings`` is disqualifying: the model's finding may be given."""
    return not any(w.disqualifying for w in warnings)


def size_refusal(shape: Sequence[int]) -> str:
    """Why a ``(z, y, x)`` stack is refused before preprocessing, or "" when its size is analysable."""
    n, rows, cols = (int(v) for v in shape[:3])
    if rows < MIN_MATRIX_PX or cols < MIN_MATRIX_PX:
        return f"its images are {cols} × {rows} pixels; the model needs at least {MIN_MATRIX_PX} × {MIN_MATRIX_PX}"
    if n > MAX_SLICES:
        return f"it has {n} slices; the model reads at most {MAX_SLICES} (a head CT has a few hundred)"
    return ""


def check_series(
    hu: np.ndarray,
    spacing: Sequence[float],
    *,
    modality: str,
    units: str = "HU",
    orientation: Sequence[float] | None = None,
    target_spacing_mm: float = 5.0,
    positions: np.ndarray | None = None,
) -> list[UseWarning]:
    """The intended-use warnings of one series (empty when it looks like what the model was trained on).

    Parameters
    ----------
    hu:
        ``(z, y, x)`` pixel values (HU for CT).
    spacing:
        ``(dz, dy, dx)`` in mm.
    modality:
        DICOM Modality of the series.
    units:
        The loader's value units ("HU" when a CT rescale was applied).
    orientation:
        ImageOrientationPatient (row then column direction cosines), if known.
    target_spacing_mm:
        The model's slab thickness (to count model slices).
    positions:
        ``(z, 3)`` slice positions (LPS, mm), if known: the coverage is then their span along the slice normal
        plus one slice spacing, which stays true for a series with gaps (slices × spacing would not).
    """
    warnings: list[UseWarning] = []
    dz, dy, dx = (float(s) for s in spacing)
    if modality.upper() != "CT":
        warnings.append(
            UseWarning(
                "modality",
                f"The series is {modality or 'of unknown modality'}, not CT; the model reads CT only.",
            )
        )
    elif units and units.upper() != "HU":
        warnings.append(UseWarning("units", f"The pixel values are in {units}, not Hounsfield units."))
    n = int(hu.shape[0])
    n_model = math.ceil(n / max(1, round(target_spacing_mm / dz))) if dz > 0 else n
    coverage = _coverage_mm(n, dz, positions, orientation)
    if n_model < MIN_MODEL_SLICES or coverage < MIN_COVERAGE_MM:
        warnings.append(
            UseWarning(
                "coverage",
                f"The series covers {coverage:.0f} mm in {n} slices; the model expects a whole head "
                f"(at least {MIN_COVERAGE_MM:.0f} mm and {MIN_MODEL_SLICES} slices of {target_spacing_mm:g} mm).",
            )
        )
    elif dz > target_spacing_mm * THICK_SLICE_FACTOR:
        warnings.append(
            UseWarning(
                "slice_thickness",
                f"The slices are {dz:g} mm apart, thicker than the model's {target_spacing_mm:g} mm slabs; "
                "a small bleed between slices may be missed.",
                disqualifying=False,
            )
        )
    if min(hu.shape[1], hu.shape[2]) < MIN_MATRIX_PX:
        warnings.append(
            UseWarning(
                "matrix",
                f"The images are {hu.shape[2]} × {hu.shape[1]} pixels; the model needs at least "
                f"{MIN_MATRIX_PX} × {MIN_MATRIX_PX}.",
            )
        )
    if orientation is not None and len(orientation) == 6:
        row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
        normal = np.cross(row, col)
        norm = float(np.linalg.norm(normal))
        if norm > 0:
            tilt = math.degrees(math.acos(min(1.0, abs(normal[2]) / norm)))
            if tilt > MAX_TILT_DEG:
                plane = "sagittal" if abs(normal[0]) > abs(normal[1]) else "coronal"
                warnings.append(
                    UseWarning(
                        "orientation",
                        f"The slices are {plane}-like ({tilt:.0f}° from axial); the model was trained on axial slices.",
                    )
                )
    fov = max(hu.shape[1] * dy, hu.shape[2] * dx)
    if not FOV_MM[0] <= fov <= FOV_MM[1]:
        warnings.append(
            UseWarning(
                "field_of_view",
                f"The field of view is {fov:.0f} mm; a head CT is usually {FOV_MM[0]:.0f}–{FOV_MM[1]:.0f} mm.",
            )
        )
    if modality.upper() == "CT":
        sample = np.asarray(hu[:: max(1, n // 16), ::4, ::4], dtype=np.float32)
        padded = float((sample < PADDING_BELOW_HU).mean()) if sample.size else 1.0
        scanned = sample[sample >= PADDING_BELOW_HU]
        lo = float(np.percentile(scanned, 1)) if scanned.size else float("nan")
        hi = float(np.percentile(scanned, 99.9)) if scanned.size else float("nan")
        body = sample[sample > -500]
        brain = float(((body >= BRAIN_HU[0]) & (body <= BRAIN_HU[1])).mean()) if body.size else 0.0
        fat = float(((body >= FAT_HU[0]) & (body <= FAT_HU[1])).mean()) if body.size else 0.0
        if padded > MAX_PADDING_FRACTION:
            warnings.append(
                UseWarning(
                    "hu_range",
                    f"{padded:.0%} of the pixels lie below {PADDING_BELOW_HU:.0f}, below air; these are not "
                    "Hounsfield units of a head CT.",
                )
            )
        elif lo > -500 or hi < 300 or hi > 4000:
            warnings.append(
                UseWarning(
                    "hu_range",
                    f"The values run from {lo:.0f} to {hi:.0f}; a head CT in HU shows air near −1000 and bone "
                    "above 300.",
                )
            )
        elif brain < MIN_BRAIN_FRACTION:
            warnings.append(
                UseWarning(
                    "anatomy",
                    f"Only {brain:.0%} of the tissue lies in the brain range ({BRAIN_HU[0]:.0f}–{BRAIN_HU[1]:.0f} HU); "
                    "this may not be a head CT.",
                )
            )
        elif fat > MAX_FAT_FRACTION:
            warnings.append(
                UseWarning(
                    "anatomy",
                    f"{fat:.0%} of the tissue lies in the fat range ({FAT_HU[0]:.0f}–{FAT_HU[1]:.0f} HU); a head has "
                    "little fat, so this looks like a body CT (chest, heart, abdomen).",
                )
            )
    return warnings


def _coverage_mm(
    n: int, dz: float, positions: np.ndarray | None, orientation: Sequence[float] | None
) -> float:
    """The extent of the series along its slice normal: the span of the slice positions plus one spacing, or
    ``n × dz`` when the positions are not known."""
    pos = np.asarray(positions, dtype=float) if positions is not None else None
    if pos is None or pos.ndim != 2 or pos.shape[1] != 3 or len(pos) < 2 or not np.all(np.isfinite(pos)):
        return n * dz
    normal = (
        np.cross(orientation[:3], orientation[3:])
        if orientation is not None and len(orientation) == 6
        else None
    )
    if normal is None or not np.linalg.norm(normal) > 0:
        normal = pos[-1] - pos[0]
    norm = float(np.linalg.norm(normal))
    if not norm > 0:
        return n * dz
    along = pos @ (normal / norm)
    return float(along.max() - along.min()) + max(dz, 0.0)
