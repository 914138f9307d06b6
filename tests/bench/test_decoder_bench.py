"""The decoder bench on a tiny series: every decoder timed and checked, loads compared across readers."""

from __future__ import annotations

import math
from pathlib import Path

from pydicom.uid import HTJ2K, JPEGBaseline8Bit, JPEGLSNearLossless, RLELossless

from viewer.bench.decoders import as_dict, bench_decoders, format_decoder_report


def test_decoder_bench_checks_each_decoder_and_each_reader(tmp_path: Path) -> None:
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
