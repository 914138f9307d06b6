"""The one error type users see: its message can always be printed and shown, whatever the file's name."""

from __future__ import annotations

import os

from viewer.errors import ViewerError, printable


def test_a_name_that_is_not_utf8_shows_its_bytes_in_the_message() -> None:
    err = ViewerError("Could not read DICOM file", "truncated", os.fsdecode(b"/media/caf\xe9.dcm"))
    assert str(err) == "Could not read DICOM file: /media/caf\\xe9.dcm — truncated"
    str(err).encode("utf-8")  # printable and showable under any locale


def test_printable_leaves_valid_text_alone() -> None:
    assert printable("Röntgen/ß.dcm") == "Röntgen/ß.dcm"
    assert printable(os.fsdecode(b"caf\xe9.txt")) == "caf\\xe9.txt"
