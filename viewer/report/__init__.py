"""Reports of one analysis: PDF, the same PDF as DICOM Encapsulated PDF, PNG key images and JSON.

Headless (no Qt). The GUI's File → Export report… and ``gru-viewer analyze --report`` call::

    report = build_report(volume, result, card, ReportOptions(anonymize=False))
    save_pdf(report, "report.pdf")
    save_dicom(report, "archive_folder")

None of them writes inside the analysed series' folder.
"""

from viewer.report.api import Report, ReportOptions, build_report, save_pdf
from viewer.report.dicom_export import encapsulated_pdf, save_dicom
from viewer.report.images import export_png, render_key_image
from viewer.report.output import check_output_path, export_json, result_json

__all__ = [
    "Report",
    "ReportOptions",
    "build_report",
    "check_output_path",
    "encapsulated_pdf",
    "export_json",
    "export_png",
    "render_key_image",
    "result_json",
    "save_dicom",
    "save_pdf",
]
