"""Paragraph styles and colours of the report (one place, so every page looks the same)."""

from __future__ import annotations

from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.styles import ParagraphStyle

from viewer.report.fonts import FONT, FONT_BOLD

INK = colors.HexColor("#1a1a1a")
MUTED = colors.HexColor("#555555")
RULE = colors.HexColor("#bbbbbb")
POSITIVE = colors.HexColor("#a4161a")
POSITIVE_BG = colors.HexColor("#fde8e8")
NEGATIVE = colors.HexColor("#1d4e89")
NEGATIVE_BG = colors.HexColor("#e8f0fb")
WARNING = colors.HexColor("#8a5300")
WARNING_BG = colors.HexColor("#fff4d6")
WARNING_EDGE = colors.HexColor("#e0a100")
BOX_BG = colors.HexColor("#f3f3f3")

BODY = ParagraphStyle("body", fontName=FONT, fontSize=9, leading=12, textColor=INK, alignment=TA_LEFT)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=7.5, leading=9.5, textColor=MUTED)
TITLE = ParagraphStyle("title", parent=BODY, fontName=FONT_BOLD, fontSize=17, leading=21)
SUBTITLE = ParagraphStyle("subtitle", parent=BODY, fontSize=8.5, leading=11, textColor=MUTED)
H2 = ParagraphStyle(
    "h2", parent=BODY, fontName=FONT_BOLD, fontSize=12, leading=15, spaceBefore=6, spaceAfter=4
)
H3 = ParagraphStyle(
    "h3", parent=BODY, fontName=FONT_BOLD, fontSize=9.5, leading=12, spaceBefore=4, spaceAfter=2
)
LABEL = ParagraphStyle("label", parent=BODY, fontSize=8, leading=10.5, textColor=MUTED)
VALUE = ParagraphStyle("value", parent=BODY, fontSize=9, leading=11.5)
UID = ParagraphStyle("uid", parent=BODY, fontSize=7, leading=9, textColor=MUTED)
FINDING = ParagraphStyle("finding", parent=BODY, fontName=FONT_BOLD, fontSize=24, leading=29)
FINDING_SUB = ParagraphStyle("finding_sub", parent=BODY, fontSize=11.5, leading=15)
WARNING_TITLE = ParagraphStyle("warning_title", parent=BODY, fontName=FONT_BOLD, fontSize=10.5, leading=13)
CAPTION = ParagraphStyle("caption", parent=BODY, fontSize=8, leading=10.5)
