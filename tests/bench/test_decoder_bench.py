"""The decoder bench on a tiny series: every decoder timed and checked, loads compared across readers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydicom.uid import HTJ2K, HTJ2KLossless, JPEGBaseline8Bit, JPEGLSNearLossless, RLELossless

from viewer.bench.decoders import as_dict, bench_decoders, format_decoder_report
from viewer.synth import codec_series


def test_decoder_bench_checks_each_decoder_and_each_reader(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(codec_series.shutil, "which", lambda _name: None)  # as on a machine without OpenJPH
    syntaxes = (RLELossless, JPEGLSNearLossless, JPEGBaseline8Bit, HTJ2K)
    timings, loads = bench_decoders(n_slices=2, matrix=32, syntaxes=syntaxes, work_dir=tmp_path)
    by_syntax = {t: [d for d in timings if d.transfer_syntax == t] for t in syntaxes}
    assert {d.decoder for d in by_syntax[RLELossless]} >= {"pylibjpeg", "pydicom", "gdcm-reader"}
    # GDCM's codec on the frame is timed for the JPEG syntaxes only
    assert "gdcm-codec" in {d.decoder for d in by_syntax[JPEGBaseline8Bit]}
    assert "gdcm-codec" not in {d.decoder for d in by_syntax[RLELossless]}
    for ts in (RLELossless, JPEGLSNearLossless, JPEGBaseline8Bit):
        ran = [d for d in by_syntax[ts] if not d.error]
        assert ran and all(d.within_tolerance for d in ran), ts
        assert all(d.ms_per_slice > 0 and d.ms_per_slice_2_threads for d in ran)
    assert all(d.max_error == 0 for d in by_syntax[RLELossless] if not d.error)
    assert max(d.max_error or 0 for d in by_syntax[JPEGLSNearLossless]) <= 2
    [htj2k] = by_syntax[HTJ2K]
    assert "HTJ2K encoder" in htj2k.error and math.isnan(htj2k.ms_per_slice)
    assert [r.transfer_syntax for r in loads] == [RLELossless, JPEGLSNearLossless, JPEGBaseline8Bit]
    for r in loads:
        assert r.ours_ok and r.simpleitk_ok and r.pydicom_ok, r
        assert r.ratio > 0
    text = format_decoder_report(timings, loads)
    assert "pyjpegls" in text and "/faster" in text
    assert set(as_dict(timings, loads)["loads"]) == {str(t) for t in syntaxes[:3]}


@pytest.mark.skipif(bool(codec_series.can_write(HTJ2K)), reason=codec_series.can_write(HTJ2K) or "-")
def test_htj2k_is_benchmarked_where_openjph_can_write_it(tmp_path: Path) -> None:
    timings, loads = bench_decoders(n_slices=2, matrix=32, syntaxes=(HTJ2KLossless, HTJ2K), work_dir=tmp_path)
    ran = [d for d in timings if not d.error]
    assert {d.transfer_syntax for d in ran} == {HTJ2KLossless, HTJ2K}
    assert all(d.within_tolerance for d in ran if d.decoder == "pylibjpeg")
    assert all(
        d.max_error == 0 for d in ran if d.transfer_syntax == HTJ2KLossless and d.decoder == "pylibjpeg"
    )
    assert [r.transfer_syntax for r in loads] == [HTJ2KLossless, HTJ2K] and all(r.ours_ok for r in loads)
