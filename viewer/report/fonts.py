"""The report's fonts: DejaVu Sans where the system has it (wide glyph coverage), else Bitstream Vera, which
ships inside reportlab, so a report renders the same text on any machine. Both are embedded (subset) as
TrueType, so the PDF's text is vector and extractable."""

from __future__ import annotations

from pathlib import Path

from reportlab.lib.fonts import addMapping
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

FONT = "ReportSans"
FONT_BOLD = "ReportSans-Bold"
FONT_ITALIC = "ReportSans-Italic"

_DEJAVU_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/local/share/fonts",
    "/Library/Fonts",
)
_FALLBACKS = {"⊙": "∘", "→": "->", "←": "<-", "Δ": "delta "}
_covered: set[int] = set()


def _files() -> tuple[str, str, str]:
    for folder in _DEJAVU_DIRS:
        files = [
            Path(folder) / n for n in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf")
        ]
        if all(f.is_file() for f in files):
            return tuple(str(f) for f in files)  # type: ignore[return-value]
    import reportlab

    root = Path(reportlab.__file__).parent / "fonts"
    return str(root / "Vera.ttf"), str(root / "VeraBd.ttf"), str(root / "VeraIt.ttf")


def bold_font_file() -> str:
    """The TrueType file of :data:`FONT_BOLD` (for images drawn with PIL)."""
    return _files()[1]


def register_fonts() -> None:
    """Register :data:`FONT` and its bold and italic faces with reportlab (once)."""
    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    regular, bold, italic = _files()
    font = TTFont(FONT, regular)
    pdfmetrics.registerFont(font)
    pdfmetrics.registerFont(TTFont(FONT_BOLD, bold))
    pdfmetrics.registerFont(TTFont(FONT_ITALIC, italic))
    addMapping(FONT, 0, 0, FONT)
    addMapping(FONT, 1, 0, FONT_BOLD)
    addMapping(FONT, 0, 1, FONT_ITALIC)
    addMapping(FONT, 1, 1, FONT_BOLD)
    _covered.update(font.face.charToGlyph)


def safe_text(text: str) -> str:
    """``text`` with the few symbols the font lacks replaced by a readable stand-in (e.g. ⊙ → ∘ in Vera)."""
    register_fonts()
    return "".join(c if ord(c) in _covered or c in "\n\t" else _FALLBACKS.get(c, c) for c in text)


register_fonts()
