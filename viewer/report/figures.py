"""Flowables that draw a rendered key image into the PDF at its true aspect, with the viewer's annotations:
orientation letters on the four edges and a scale bar."""

from __future__ import annotations

import numpy as np
from reportlab.lib import colors
from reportlab.lib.utils import ImageReader
from reportlab.platypus import Flowable

from viewer.report.fonts import FONT, FONT_BOLD


def _image_reader(image: np.ndarray) -> ImageReader:
    from PIL import Image

    return ImageReader(Image.fromarray(np.ascontiguousarray(image)))


def scale_bar_mm(extent_mm: float) -> int:
    """A round length (mm) about a fifth of the image width: 10, 20, 50 or 100 mm."""
    target = extent_mm / 5
    return max((v for v in (5, 10, 20, 50, 100) if v <= max(target, 5)), default=5)


class SliceFigure(Flowable):
    """One rendered slice, ``width`` points wide, height from its physical aspect.

    ``letters`` maps ``"left"``, ``"right"``, ``"top"``, ``"bottom"`` to patient-direction letters
    (:func:`viewer.dicom.stacks.orientation_letters`); ``caption`` is drawn in the image's top-left corner.
    """

    def __init__(
        self,
        image: np.ndarray,
        width: float,
        extent_mm: tuple[float, float],
        letters: dict[str, str] | None = None,
        caption: str = "",
    ) -> None:
        super().__init__()
        self.image = image
        self.extent_mm = extent_mm
        self.letters = letters or {}
        self.caption = caption
        self.width = width
        self.height = width * extent_mm[1] / extent_mm[0] if extent_mm[0] > 0 else width

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        c = self.canv
        w, h = self.width, self.height
        c.drawImage(_image_reader(self.image), 0, 0, width=w, height=h)
        c.setStrokeColor(colors.HexColor("#444444"))
        c.setLineWidth(0.4)
        c.rect(0, 0, w, h, stroke=1, fill=0)
        self._letters(w, h)
        self._scale_bar(w)
        if self.caption:
            self._text(self.caption, 4, h - 10, FONT_BOLD, 7.5)

    def _text(self, text: str, x: float, y: float, font: str, size: float, anchor: str = "start") -> None:
        """White text on a dark translucent plate, legible over any part of the image (and extracted once)."""
        c = self.canv
        width = c.stringWidth(text, font, size)
        left = x + {"start": 0.0, "middle": -width / 2, "end": -width}[anchor]
        c.saveState()
        c.setFillColor(colors.black)
        c.setFillAlpha(0.55)
        c.rect(left - 1.5, y - size * 0.25, width + 3, size * 1.1, stroke=0, fill=1)
        c.setFillAlpha(1.0)
        c.setFillColor(colors.white)
        c.setFont(font, size)
        c.drawString(left, y, text)
        c.restoreState()

    def _letters(self, w: float, h: float) -> None:
        size = 9
        if self.letters.get("left"):
            self._text(self.letters["left"], 4, h / 2 - size / 3, FONT_BOLD, size)
        if self.letters.get("right"):
            self._text(self.letters["right"], w - 4, h / 2 - size / 3, FONT_BOLD, size, "end")
        if self.letters.get("top"):
            self._text(self.letters["top"], w / 2, h - size - 2, FONT_BOLD, size, "middle")
        if self.letters.get("bottom"):
            self._text(self.letters["bottom"], w / 2, 4, FONT_BOLD, size, "middle")

    def _scale_bar(self, w: float) -> None:
        width_mm = self.extent_mm[0]
        if width_mm <= 0:
            return
        length = scale_bar_mm(width_mm)
        bar = w * length / width_mm
        x1, y = w - 6, 8
        c = self.canv
        c.saveState()
        for colour, lw in ((colors.black, 3.0), (colors.white, 1.4)):
            c.setStrokeColor(colour)
            c.setLineWidth(lw)
            c.line(x1 - bar, y, x1, y)
            c.line(x1 - bar, y - 2.5, x1 - bar, y + 2.5)
            c.line(x1, y - 2.5, x1, y + 2.5)
        c.restoreState()
        self._text(f"{length} mm", x1 - bar / 2, y + 4, FONT, 6.5, "middle")
