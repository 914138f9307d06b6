"""Synthetic head-CT studies written as real DICOM, for training, tests, benchmarks and the demo.

The phantom generator (anatomy, bleeds, rendering, datasets with their ``labels.json``), the DICOM series
writer, and the simpler phantom and folders the benchmarks and tests write. Nothing here is used by the reading
path: ``viewer.dicom`` reads what these modules write as it would read a scanner's files.
"""
