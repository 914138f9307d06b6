"""Folders of many small synthetic CT slices, for the header index's tests and benchmark.

Real UIDs, positions along z and a noise image: the index sees realistic headers without the cost of
pixels worth reading. Written straight with pydicom, one dataset reused for every file, so thousands are
quick to make.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

_ROOT_UID = "1.2.826.0.1.3680043.8.498."  # pydicom's prefix, for UIDs of synthetic objects


def _template(rows: int, columns: int) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = "20240101"
    ds.SeriesDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = "BENCH0001"
    ds.Modality = "CT"
    ds.Manufacturer = "GRU Viewer synthetic"
    ds.StudyDescription = "CT HEAD WO CONTRAST"
    ds.PatientName = "Bench^Synthetic"
    ds.PatientID = "BENCH-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.StudyID = "1"
    ds.AcquisitionNumber = "1"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [0.5, 0.5]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = "40"
    ds.WindowWidth = "80"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds


def make_synthetic_folder(
    dest: str | os.PathLike[str],
    n_files: int = 3000,
    n_series: int = 20,
    size: int = 64,
    n_studies: int = 4,
    seed: int = 0,
) -> list[Path]:
    """Write ``n_files`` small CT slices in ``n_series`` series (spread over ``n_studies`` studies).

    Files go to ``dest/STUDYk/SERIESj/IMnnnnn.dcm`` with real UIDs, positions along z and a noise image, so
    the index sees realistic headers and files of ``size``² int16 pixels. Returns the paths written.
    """
    rng = np.random.default_rng(seed)
    dest = Path(dest)
    ds = _template(size, size)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _ROOT_UID + "1"
    ds.file_meta = meta
    pixels = rng.integers(0, 1400, size=(size, size), dtype=np.int16)
    ds.PixelData = pixels.tobytes()

    study_uids = [generate_uid(_ROOT_UID) for _ in range(n_studies)]
    frame_uids = [generate_uid(_ROOT_UID) for _ in range(n_studies)]
    per_series = [n_files // n_series + (1 if j < n_files % n_series else 0) for j in range(n_series)]
    paths: list[Path] = []
    for j, count in enumerate(per_series):
        study = j % n_studies
        folder = dest / f"STUDY{study}" / f"SERIES{j}"
        folder.mkdir(parents=True, exist_ok=True)
        ds.StudyInstanceUID = study_uids[study]
        ds.SeriesInstanceUID = generate_uid(_ROOT_UID)
        ds.FrameOfReferenceUID = frame_uids[study]
        ds.SeriesNumber = j + 1
        ds.SeriesDescription = f"Synthetic axial {j + 1}"
        for i in range(count):
            uid = generate_uid(_ROOT_UID)
            ds.SOPInstanceUID = uid
            meta.MediaStorageSOPInstanceUID = uid
            ds.InstanceNumber = i + 1
            ds.ImagePositionPatient = [-16.0, -16.0, float(i)]
            ds.SliceLocation = float(i)
            path = folder / f"IM{i:05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths
