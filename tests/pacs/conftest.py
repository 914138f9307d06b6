"""PACS tests: a private node list and secrets per test, no real keyring, and one Orthanc for the package.

The Orthanc fixture (package scope: started once, ~0.1 s; killed after the last PACS test rather than stopped,
which took ~3 s) runs inside a private network namespace that this process's main thread enters for the duration
(see :mod:`.netns`), with a few small synthetic CT series and a pydicom MR file stored into it by C-STORE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from viewer.pacs import netns
from viewer.pacs import testserver as orthanc


@pytest.fixture(autouse=True)
def _private_pacs_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Node list and secrets file in a temporary folder; keyring's "fail" backend unless a test sets another,
    so a test never writes to the user's keyring."""
    import keyring
    from keyring.backends import fail

    folder = tmp_path / "config"
    monkeypatch.setenv("GRU_VIEWER_CONFIG_DIR", str(folder))
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield folder
    keyring.set_keyring(previous)


def known_hu(n: int, m: int, offset: int = 0) -> np.ndarray:
    """HU predictable at any voxel: -1000 + offset + 10·k + j + 2·i (slice k, row j, column i)."""
    k, j, i = np.meshgrid(np.arange(n), np.arange(m), np.arange(m), indexing="ij")
    return (-1000 + offset + 10 * k + j + 2 * i).astype(np.float32)


@dataclass
class Seeded:
    """What the test PACS holds."""

    server: orthanc.Orthanc
    files: dict[str, list[Path]] = field(default_factory=dict)  # series UID → source files
    studies: dict[str, str] = field(default_factory=dict)  # label → study UID
    series: dict[str, str] = field(default_factory=dict)  # label → series UID

    def study_files(self, study_uid: str) -> list[Path]:
        import pydicom

        return [
            p
            for paths in self.files.values()
            for p in paths
            if pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID == study_uid
        ]


def _write_series(folder: Path, label: str, meta, n: int, offset: int) -> list[Path]:
    from viewer.synth.writer import axial_geometry, write_ct_series

    positions, orientation = axial_geometry(n, 5.0, (1.0, 1.0), 16)
    return write_ct_series(
        known_hu(n, 16, offset),
        folder / label,
        positions=positions,
        orientation=orientation,
        pixel_spacing=(1.0, 1.0),
        slice_thickness=5.0,
        meta=meta,
    )


def _seed_files(folder: Path, seeded: Seeded) -> None:
    from dataclasses import replace

    from pydicom.data import get_testdata_file

    from viewer.synth.writer import SeriesMeta

    alpha = SeriesMeta.invented(
        "Pacs^Alpha",
        "PACS-A",
        "Axial",
        series_number=1,
        study_date="20240102",
        accession_number="ACC-A",
        study_description="PACS TEST ALPHA",
    )
    alpha2 = replace(
        alpha, series_uid=_uid(), series_number=2, series_description="Second", frame_of_reference_uid=_uid()
    )
    beta = SeriesMeta.invented(
        "Pacs^Beta",
        "PACS-B",
        "Axial",
        series_number=1,
        study_date="20240315",
        accession_number="ACC-B",
        study_description="PACS TEST BETA",
    )
    for label, meta, n, offset in (
        ("alpha1", alpha, 8, 0),
        ("alpha2", alpha2, 4, 300),
        ("beta", beta, 6, 600),
    ):
        seeded.files[meta.series_uid] = _write_series(folder, label, meta, n, offset)
        seeded.series[label] = meta.series_uid
    seeded.studies["alpha"], seeded.studies["beta"] = alpha.study_uid, beta.study_uid
    import pydicom

    mr = Path(get_testdata_file("MR_small.dcm"))
    ds = pydicom.dcmread(mr, stop_before_pixels=True)
    seeded.files[str(ds.SeriesInstanceUID)] = [mr]
    seeded.studies["mr"], seeded.series["mr"] = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def _uid() -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid())


def c_store(paths: list[Path]) -> None:
    """Send files to the test PACS by C-STORE (one context per SOP class and transfer syntax)."""
    import pydicom
    from pynetdicom import AE

    import viewer.pacs.dimse  # noqa: F401  (TCP_NODELAY on our sockets)

    dsets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=orthanc.OUR_AET)
    for sop, ts in {(d.SOPClassUID, d.file_meta.TransferSyntaxUID) for d in dsets}:
        ae.add_requested_context(sop, ts)
    assoc = ae.associate("127.0.0.1", orthanc.DICOM_PORT, ae_title=orthanc.AET)
    assert assoc.is_established, "the test PACS refused the C-STORE association"
    try:
        for ds in dsets:
            status = assoc.send_c_store(ds)
            assert status and status.Status == 0x0000, f"C-STORE failed: {status}"
    finally:
        assoc.release()


@pytest.fixture(scope="package")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """Orthanc in a private network namespace, holding two synthetic CT studies (3 series) and an MR file."""
    why = netns.unavailable() or orthanc.unavailable()
    if why:
        pytest.skip(f"no test PACS: {why}")
    try:
        ns = netns.enter()
    except OSError as exc:
        pytest.skip(f"no test PACS: cannot enter a private network namespace ({exc})")
    server = None
    try:
        server = orthanc.start(tmp_path_factory.mktemp("orthanc"))
        seeded = Seeded(server)
        _seed_files(tmp_path_factory.mktemp("pacs-source"), seeded)
        c_store([p for paths in seeded.files.values() for p in paths])
        yield seeded
    finally:
        if server is not None:
            # Its storage is a temporary folder: no need to wait for a clean shutdown.
            server.stop(graceful=False)
        ns.leave()


def dimse_node(**changes):
    """The test PACS as a DIMSE node (a keyword changes a field)."""
    from viewer.pacs.nodes import Node

    fields = {"name": "orthanc", "ae_title": orthanc.AET, "host": "127.0.0.1", "port": orthanc.DICOM_PORT}
    fields.update(changes)
    return Node(**fields).validated()


def web_node(**changes):
    """The test PACS as a DICOMweb node with basic authentication."""
    from viewer.pacs.nodes import Node

    fields = {
        "name": "orthanc-web",
        "web_url": f"http://127.0.0.1:{orthanc.HTTP_PORT}/dicom-web",
        "auth": "basic",
        "username": orthanc.USER,
    }
    fields.update(changes)
    return Node(**fields).validated()


@pytest.fixture
def store(tmp_path: Path):
    from viewer.pacs.store import LocalStore

    return LocalStore(tmp_path / "store")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests using the Orthanc fixture are marked ``pacs``."""
    for item in items:
        if "pacs" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pacs)
