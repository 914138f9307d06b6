"""Robustness: deterministically mutated DICOM files go through index → load → analyse without a crash.

Seeds are pydicom's own test files (CT, MR, each compressed syntax the viewer decodes) and a phantom CT series.
Each case writes one mutated set into a fresh folder: a single mutated file, or the phantom series with one to
three of its slices mutated. Mutations: truncation, bit flips, absurd lengths in element headers, wrong VRs in
element headers and absurd values in the attributes the pixel pipeline trusts (Rows, BitsAllocated, ...).

The contract: every file is either indexed or listed in ``index.skipped`` with a reason; each stack either loads
or raises :class:`~viewer.errors.ViewerError` with what and why; each loaded volume is analysed or refused with a
``ViewerError``. No other exception escapes, no case takes more than :data:`CASE_LIMIT_S`, and the process's
memory stays within :data:`RSS_LIMIT_MB` of where it started.

Each crash the fuzz found (GDCM aborting the process, a NumberOfFrames that exhausted memory, exceptions that
escaped) is kept as a regression case, run in a subprocess so a regression fails a test instead of the run.

The default run is bounded (a few hundred files, well under a minute on 2 cores). ``pytest --fuzz-long`` runs
ten rounds with fresh seeds; ``GRU_VIEWER_FUZZ=N`` runs N rounds.
"""

from __future__ import annotations

import hashlib
import os
import random
import resource
import shutil
import struct
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import psutil
import pydicom
import pytest
from pydicom.data import get_testdata_file

from viewer.analysis.model_cache import load_model
from viewer.analysis.run import AnalysisOptions, analyze_volume
from viewer.dicom.index import scan
from viewer.dicom.readers import load_stack
from viewer.errors import ViewerError
from viewer.model.config import ModelConfig
from viewer.model.network import SliceGRUNet
from viewer.model.weights import save_weights

pytestmark = [pytest.mark.filterwarnings("ignore")]

CASE_LIMIT_S = 5.0
RSS_LIMIT_MB = 400.0


# pydicom's test files (all shipped inside the pydicom wheel: no download), chosen for what the viewer decodes.
SEED_FILES = (
    "CT_small.dcm",  # CT, Explicit VR Little Endian
    "MR_small.dcm",  # MR, Explicit VR Little Endian
    "MR_small_implicit.dcm",  # Implicit VR Little Endian
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian
    "MR_small_RLE.dcm",  # RLE Lossless (pylibjpeg-rle)
    "MR_small_jp2klossless.dcm",  # JPEG 2000 Lossless (openjpeg)
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS Lossless (GDCM)
    "693_J2KI.dcm",  # CT, JPEG 2000 lossy
    "JPEG-lossy.dcm",  # JPEG Extended 12-bit (GDCM reader)
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG Lossless SV1 (GDCM), RGB
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
)
PHANTOM = "phantom"
FAMILIES = ("truncate", "bitflip", "length", "vr", "value")
PER_FAMILY_FILE = 4  # 11 seeds × 5 families × 4 = 220 single-file cases
PER_FAMILY_PHANTOM = 8  # 5 × 8 = 40 phantom-series cases, 1-3 of its 40 files mutated in each

LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
ANY_VRS = [b"SQ", b"UN", b"OB", b"OW", b"US", b"UL", b"FD", b"DS", b"IS", b"UI", b"XX", b"\x00\x00", b"ZZ"]
ABSURD_LONG = [0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF, 0x80000000, 0x00FFFFFF, 0, 1, 3]
ABSURD_SHORT = [0xFFFF, 0xFFFE, 0x8000, 0, 1, 3]
# Attributes the pixel pipeline and geometry trust, with values no scanner writes.
ABSURD_VALUES: list[tuple[str, str, object]] = [
    ("Rows", "US", 0),
    ("Rows", "US", 65535),
    ("Columns", "US", 1),
    ("Columns", "US", 65535),
    ("BitsAllocated", "US", 0),
    ("BitsAllocated", "US", 7),
    ("BitsAllocated", "US", 64),
    ("BitsStored", "US", 0),
    ("BitsStored", "US", 40),
    ("HighBit", "US", 99),
    ("SamplesPerPixel", "US", 0),
    ("SamplesPerPixel", "US", 4),
    ("PixelRepresentation", "US", 7),
    ("PlanarConfiguration", "US", 5),
    ("NumberOfFrames", "IS", "-1"),
    ("NumberOfFrames", "IS", "2147483647"),
    ("NumberOfFrames", "IS", "0"),
    ("PhotometricInterpretation", "CS", "BOGUS"),
    ("PhotometricInterpretation", "CS", "PALETTE COLOR"),
    ("RescaleSlope", "DS", "0"),
    ("RescaleSlope", "DS", "NaN"),
    ("RescaleSlope", "DS", "1e308"),
    ("RescaleIntercept", "DS", "-1e308"),
    ("RescaleIntercept", "DS", "inf"),
    ("WindowWidth", "DS", "0"),
    ("WindowCenter", "DS", "nan"),
    ("PixelSpacing", "DS", ["0", "0"]),
    ("PixelSpacing", "DS", ["nan", "1e400"]),
    ("PixelSpacing", "DS", ["-1"]),
    ("SliceThickness", "DS", "-5"),
    ("ImageOrientationPatient", "DS", ["0", "0", "0", "0", "0", "0"]),
    ("ImageOrientationPatient", "DS", ["1", "0", "0", "1", "0", "0"]),
    ("ImageOrientationPatient", "DS", ["nan"] * 6),
    ("ImagePositionPatient", "DS", ["1e308", "-1e308", "nan"]),
    ("ImagePositionPatient", "DS", ["0"]),
    ("SeriesInstanceUID", "UI", ""),
    ("SOPInstanceUID", "UI", "1.2." + "9" * 200),
    ("Modality", "CS", ""),
    ("SpecificCharacterSet", "CS", "ISO_IR 999"),
    ("SpecificCharacterSet", "CS", ["ISO 2022 IR 87", "GARBAGE"]),
    ("PatientName", "PN", "\udcff" * 3),
    ("TransferSyntaxUID", "UI", "1.2.3.4.5.6"),
    ("TransferSyntaxUID", "UI", "1.2.840.10008.1.2.4.50"),
    ("TransferSyntaxUID", "UI", "1.2.840.10008.1.2.5"),
    ("TransferSyntaxUID", "UI", "1.2.840.10008.1.2"),
    ("PixelData", "OB", b""),
    ("PixelData", "OB", b"\x00" * 7),
]


def _rounds(config: pytest.Config) -> int:
    env = os.environ.get("GRU_VIEWER_FUZZ", "").strip()
    if env:
        return max(1, int(env))
    return 10 if config.getoption("--fuzz-long", default=False) else 1


# A guard against a hang (each case's own time is checked against CASE_LIMIT_S): 2 minutes per round. The
# marker is read before any fixture runs, so the rounds are taken from the command line here.
_ROUNDS_AT_IMPORT = int(
    os.environ.get("GRU_VIEWER_FUZZ", "").strip() or (10 if "--fuzz-long" in sys.argv else 1)
)
TEST_TIMEOUT_S = 120 * max(1, _ROUNDS_AT_IMPORT)


# -- mutations -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    """An element header in the file: where its tag starts, its encoding and the tag it should hold."""

    offset: int
    implicit: bool
    little: bool
    tag: int


def element_headers(data: bytes) -> list[_Header]:
    """Top-level element headers of a DICOM file (file meta and dataset), found through pydicom's parse.

    A deflated dataset's elements live in the compressed stream, so only its file meta is listed.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(BytesIO(data), force=True)
        implicit, little = ds.original_encoding
        deflated = (
            str(ds.file_meta.get("TransferSyntaxUID", "")) == pydicom.uid.DeflatedExplicitVRLittleEndian
        )
    found = []
    parts = [(ds.file_meta, False, True)]
    if not deflated and implicit is not None:
        parts.append((ds, implicit, little))
    for part, imp, lit in parts:
        for tag, elem in part._dict.items():
            if hasattr(elem, "value_tell") and elem.value_tell is not None:
                vr = (elem.VR or "").encode()
                start = elem.value_tell - (8 if imp or vr not in LONG_VRS else 12)
            else:
                start = getattr(elem, "file_tell", None)
            if start is None or start < 0 or start + 8 > len(data):
                continue
            fmt = "<HH" if lit else ">HH"
            group, element = struct.unpack(fmt, data[start : start + 4])
            if (group << 16 | element) == int(tag):
                found.append(_Header(start, imp, lit, int(tag)))
    return found


def _truncate(data: bytes, rng: random.Random) -> bytes:
    # Half the cuts fall in the first 1 KiB (preamble, meta, header), half anywhere.
    limit = min(len(data) - 1, 1024) if rng.random() < 0.5 else len(data) - 1
    return data[: rng.randrange(0, max(1, limit))]


def _bitflip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    n = rng.choice((1, 2, 4, 8, 32))
    header_only = rng.random() < 0.6
    span = min(len(out), 2048) if header_only else len(out)
    for _ in range(n):
        i = rng.randrange(span)
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _length(data: bytes, rng: random.Random) -> bytes:
    headers = element_headers(data)
    if not headers:
        return _bitflip(data, rng)
    out = bytearray(data)
    for h in rng.sample(headers, k=min(len(headers), rng.choice((1, 1, 2)))):
        order = "<" if h.little else ">"
        vr = bytes(out[h.offset + 4 : h.offset + 6])
        if h.implicit:
            struct.pack_into(order + "I", out, h.offset + 4, rng.choice(ABSURD_LONG + [len(data) * 3]))
        elif vr in LONG_VRS:
            struct.pack_into(order + "I", out, h.offset + 8, rng.choice(ABSURD_LONG + [len(data) * 3]))
        else:
            struct.pack_into(order + "H", out, h.offset + 6, rng.choice(ABSURD_SHORT))
    return bytes(out)


def _vr(data: bytes, rng: random.Random) -> bytes:
    headers = [h for h in element_headers(data) if not h.implicit]
    if not headers:
        return _length(data, rng)
    out = bytearray(data)
    for h in rng.sample(headers, k=min(len(headers), rng.choice((1, 2, 3)))):
        out[h.offset + 4 : h.offset + 6] = rng.choice(ANY_VRS)
    return bytes(out)


def _value(data: bytes, rng: random.Random) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(BytesIO(data), force=True)
        for keyword, vr, value in rng.sample(ABSURD_VALUES, k=rng.choice((1, 1, 2))):
            target = ds.file_meta if keyword == "TransferSyntaxUID" else ds
            target.add_new(keyword, vr, value)
        buffer = BytesIO()
        try:
            ds.save_as(buffer, enforce_file_format=False)
        except Exception:  # pydicom refuses to write some absurd values: the original is mutated another way
            return _bitflip(data, rng)
    return buffer.getvalue()


MUTATORS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncate": _truncate,
    "bitflip": _bitflip,
    "length": _length,
    "vr": _vr,
    "value": _value,
}


def mutate(data: bytes, family: str, seed: int) -> bytes:
    """``data`` mutated by ``family``; the same ``seed`` always gives the same bytes."""
    return MUTATORS[family](data, random.Random(seed))


def _seed_of(*parts: object) -> int:
    """A stable seed from the case's name (``hash()`` of a str changes between runs)."""
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


# -- the pipeline under test ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    seconds: float
    indexed: int = 0
    skipped: int = 0
    loaded: int = 0
    refused: int = 0
    analysed: int = 0
    problem: str = ""


def _check_viewer_error(exc: ViewerError) -> str:
    return "" if exc.what.strip() and exc.why.strip() else f"ViewerError without what/why: {exc!r}"


def run_pipeline(folder: Path, model_and_card: tuple) -> Outcome:
    """Index → load every stack → analyse every volume; ``problem`` says what broke the contract."""
    model, card = model_and_card
    t0 = time.perf_counter()
    out = Outcome(0.0)
    files = {str(p) for p in folder.rglob("*") if p.is_file()}
    try:
        index = scan(folder, use_cache=False, workers=1)
        indexed = {h.path for s in index.series() for h in s.headers}
        skipped = {s.path: s.reason for s in index.skipped}
        out.indexed, out.skipped = len(indexed), len(skipped)
        unaccounted = files - indexed - set(skipped)
        if unaccounted:
            out.problem = f"neither indexed nor skipped: {sorted(unaccounted)[:3]}"
        elif any(not reason.strip() for reason in skipped.values()):
            out.problem = "a skipped file has no reason"
        for stack in index.stacks():
            if out.problem:
                break
            try:
                volume = load_stack(stack, workers=1)
            except ViewerError as exc:
                out.refused += 1
                out.problem = _check_viewer_error(exc)
                continue
            out.loaded += 1
            if any(not why.strip() for _path, why in volume.skipped):
                out.problem = "a slice skipped while loading has no reason"
                break
            try:
                result = analyze_volume(
                    volume, model, card, options=AnalysisOptions(device="cpu", key_slices=1)
                )
            except ViewerError as exc:
                out.refused += 1
                out.problem = _check_viewer_error(exc)
                continue
            if not np.isfinite(result.probability):
                out.problem = f"analysis gave a non-finite probability ({result.probability})"
            out.analysed += 1
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # PanicException of a Rust extension is a BaseException: it counts too
        tb = traceback.extract_tb(exc.__traceback__)
        where = next((f for f in reversed(tb) if "/viewer/" in f.filename), tb[-1])
        out.problem = f"{type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})"
    out.seconds = time.perf_counter() - t0
    return out


# -- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """The tiny model, run on one thread: torch's thread pool costs more than it gives on 32² inputs, and spins
    when the cores are shared."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fuzz-model") / "tiny.safetensors"
    net = SliceGRUNet(ModelConfig(input_size=32, encoder_channels=(8, 16), hidden_size=8)).eval()
    save_weights(net, path, name="t", version="0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_model(path)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def phantom_series(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from viewer.synth.dataset import write_phantom_dataset

    manifest = write_phantom_dataset(tmp_path_factory.mktemp("fuzz-phantom"), studies=1, seed=0, matrix=48)
    return sorted(manifest.studies[0].series_dir.glob("*.dcm"))


@pytest.fixture(scope="module")
def memory() -> Iterator[dict[str, float]]:
    """RSS and peak RSS (MB) when the module starts; every test checks growth against them."""
    usage = {"rss": psutil.Process().memory_info().rss / 2**20, "peak": _peak_mb()}
    yield usage


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _check_memory(memory: dict[str, float]) -> None:
    rss = psutil.Process().memory_info().rss / 2**20
    assert rss - memory["rss"] < RSS_LIMIT_MB, f"RSS grew by {rss - memory['rss']:.0f} MB"
    assert _peak_mb() - memory["peak"] < RSS_LIMIT_MB, (
        f"peak RSS grew by {_peak_mb() - memory['peak']:.0f} MB"
    )


def _report(outcomes: dict[str, Outcome]) -> None:
    problems = [f"{name}: {o.problem}" for name, o in outcomes.items() if o.problem]
    slow = [f"{name}: {o.seconds:.1f} s" for name, o in outcomes.items() if o.seconds > CASE_LIMIT_S]
    assert not problems, f"{len(problems)} of {len(outcomes)} cases broke the contract:\n" + "\n".join(
        problems
    )
    assert not slow, f"cases slower than {CASE_LIMIT_S} s:\n" + "\n".join(slow)


# -- the tests -----------------------------------------------------------------------------------------------


def test_mutations_are_deterministic() -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    for family in FAMILIES:
        assert mutate(data, family, 7) == mutate(data, family, 7)
        assert mutate(data, family, 7) != data
    headers = element_headers(data)
    assert len(headers) > 40
    assert headers[0].tag in (0x00020000, 0x00020001)


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("seed_name", SEED_FILES)
def test_mutated_files(
    seed_name: str,
    tmp_path: Path,
    tiny_model: tuple,
    memory: dict[str, float],
    pytestconfig: pytest.Config,
) -> None:
    original = Path(get_testdata_file(seed_name)).read_bytes()
    outcomes: dict[str, Outcome] = {}
    for round_ in range(_rounds(pytestconfig)):
        for family in FAMILIES:
            for i in range(PER_FAMILY_FILE):
                name = f"{family}-{round_}-{i}"
                folder = tmp_path / name
                folder.mkdir()
                (folder / seed_name).write_bytes(mutate(original, family, _seed_of(seed_name, name)))
                outcomes[name] = run_pipeline(folder, tiny_model)
                shutil.rmtree(folder)
    _report(outcomes)
    _check_memory(memory)


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("family", FAMILIES)
def test_mutated_phantom_series(
    family: str,
    tmp_path: Path,
    phantom_series: list[Path],
    tiny_model: tuple,
    memory: dict[str, float],
    pytestconfig: pytest.Config,
) -> None:
    outcomes: dict[str, Outcome] = {}
    for round_ in range(_rounds(pytestconfig)):
        for i in range(PER_FAMILY_PHANTOM):
            name = f"{family}-{round_}-{i}"
            rng = random.Random(_seed_of(PHANTOM, name))
            folder = tmp_path / name
            folder.mkdir()
            victims = set(rng.sample(range(len(phantom_series)), k=rng.choice((1, 2, 3))))
            for k, src in enumerate(phantom_series):
                target = folder / src.name
                if k in victims:
                    target.write_bytes(mutate(src.read_bytes(), family, rng.randrange(2**32)))
                else:
                    os.link(src, target)
            outcome = run_pipeline(folder, tiny_model)
            outcomes[name] = outcome
            if not outcome.problem and outcome.loaded == 0 and len(victims) < len(phantom_series):
                outcome.problem = "no stack of the series loaded although most files are intact"
            shutil.rmtree(folder)
    _report(outcomes)
    _check_memory(memory)


# -- the crashes the fuzz found, kept as regression cases ----------------------------------------------------

_CRASHERS = r"""
import resource, sys, warnings
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

warnings.simplefilter("ignore")
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))  # an allocation blow-up fails, not the machine

from viewer.dicom.index import scan
from viewer.dicom.readers import load_stack
from viewer.errors import ViewerError


def with_value(name, keyword, vr, value):
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.add_new(keyword, vr, value)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def with_vr(name, tag, vr):
    data = bytearray(Path(get_testdata_file(name)).read_bytes())
    at = data.rindex(tag)
    data[at + 4 : at + 6] = vr
    return bytes(data)


cases = {
    # GDCM: "terminate called after throwing gdcm::Exception" (abort)
    "jpeg-ls, SamplesPerPixel 0": with_value("MR_small_jpeg_ls_lossless.dcm", "SamplesPerPixel", "US", 0),
    "jpeg-ls, Rows 65535": with_value("MR_small_jpeg_ls_lossless.dcm", "Rows", "US", 65535),
    "jpeg lossless, PlanarConfiguration 5": with_value("SC_rgb_jpeg_gdcm.dcm", "PlanarConfiguration", "US", 5),
    "jpeg lossless, BitsAllocated 64": with_value("SC_rgb_jpeg_gdcm.dcm", "BitsAllocated", "US", 64),
    "rle, BitsAllocated 64": with_value("MR_small_RLE.dcm", "BitsAllocated", "US", 64),
    "jpeg-ls, RescaleSlope 0": with_value("MR_small_jpeg_ls_lossless.dcm", "RescaleSlope", "DS", "0"),
    "jpeg-ls, RescaleIntercept inf": with_value("MR_small_jpeg_ls_lossless.dcm", "RescaleIntercept", "DS", "inf"),
    # GDCM's own parser: gigabytes for a damaged length
    "jpeg lossless, Pixel Data as DS": with_vr("SC_rgb_jpeg_gdcm.dcm", b"\xe0\x7f\x10\x00OB", b"DS"),
    # one SliceRef per announced frame: memory exhausted
    "NumberOfFrames 2147483647": with_value("SC_rgb_jpeg_gdcm.dcm", "NumberOfFrames", "IS", "2147483647"),
    # ValueError from pydicom's palette code
    "PALETTE COLOR without a palette": with_value(
        "MR_small_bigendian.dcm", "PhotometricInterpretation", "CS", "PALETTE COLOR"
    ),
    # BytesLengthException when BitsStored is first converted
    "BitsStored as UL": with_vr("CT_small.dcm", b"\x28\x00\x01\x01US", b"UL"),
    # pylibjpeg-rle panics (pyo3 PanicException, a BaseException)
    "rle, damaged segment": bytes.fromhex(sys.argv[2]),
}
root = Path(sys.argv[1])
for k, (name, data) in enumerate(cases.items()):
    folder = root / str(k)
    folder.mkdir()
    (folder / "image.dcm").write_bytes(data)
    index = scan(folder, use_cache=False, workers=1)
    outcome = "; ".join(s.reason for s in index.skipped) or "indexed"
    for stack in index.stacks():
        try:
            load_stack(stack, workers=1)
            outcome += ", loaded"
        except ViewerError as exc:
            outcome += ", refused: " + exc.why[:80]
    print(f"{name}: {outcome}", flush=True)
"""


def test_the_crashes_the_fuzz_found_stay_fixed(tmp_path: Path) -> None:
    """Each was a process abort, an out-of-memory kill or an exception escaping; run apart, so a regression
    fails this test instead of killing the test run."""
    import subprocess

    # The bit flips that made pylibjpeg-rle panic ("index out of bounds: the len is 8192 but the index is 8193").
    rle = mutate(
        Path(get_testdata_file("MR_small_RLE.dcm")).read_bytes(),
        "bitflip",
        _seed_of("MR_small_RLE.dcm", "bitflip-1-0"),
    )
    out = subprocess.run(
        [sys.executable, "-c", _CRASHERS, str(tmp_path), rle.hex()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr[-2000:]}"
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 12, out.stdout
    for line in lines:
        assert "loaded" in line or "refused" in line or "indexed" not in line, line


_PEAK_RSS = """
import resource, subprocess, sys
out = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(out.returncode)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # kB on Linux
print(out.stdout[-4000:])
print(out.stderr[-4000:], file=sys.stderr)
"""

HOSTILE_PEAK_MB = 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS read from getrusage in kB (Linux)")
@pytest.mark.parametrize("shape", ["header of 10^6 elements", "5000 tiny slices", "deflate bomb"])
def test_hostile_shapes_index_and_analyze_under_1_gib(tmp_path: Path, shape: str) -> None:
    """The shapes of issue #15 at their full size and the default limits, through the real command
    (``gru-viewer analyze``, which indexes, loads and analyses): the process's peak memory stays under 1 GiB,
    the file or series is refused with its reason, and nothing escapes as a traceback."""
    from tests.dicom.test_deflate import _bomb
    from tests.dicom.test_limits import _private, _series, _with_elements

    folder = tmp_path / "study"
    folder.mkdir()
    if shape == "header of 10^6 elements":
        (path,) = _series(folder, 1, size=64)
        _with_elements(path, b"".join(_private(k, b"LO", b"ab") for k in range(1_000_000)))
        said = "data elements"
    elif shape == "5000 tiny slices":
        _series(folder, 5000)
        said = "5000 slices"
    else:
        _bomb(folder / "bomb.dcm", 33_000)
        said = "GRU_VIEWER_INFLATE_LIMIT_MB"
    command = [
        sys.executable,
        "-m",
        "viewer",
        "analyze",
        str(folder),
        "--json",
        str(tmp_path / "out.json"),
        "-q",
    ]
    env = {**os.environ, "GRU_VIEWER_CACHE_DIR": str(tmp_path / "cache"), "GRU_VIEWER_DECODE_PROCESSES": "0"}
    import subprocess

    run = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *command], capture_output=True, text=True, timeout=300, env=env
    )
    code, peak_kb, *printed = run.stdout.splitlines()
    output = "\n".join(printed) + run.stderr
    assert "Traceback" not in output, output[-3000:]
    assert int(code) != 0 and said in output, output[-3000:]  # refused, saying why
    assert int(peak_kb) / 1024 < HOSTILE_PEAK_MB, f"peak {int(peak_kb) / 1024:.0f} MiB"
