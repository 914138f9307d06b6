"""GRU Viewer: a DICOM viewer for head CT with an interpretable slice-GRU classifier."""

__version__ = "0.1.0"
