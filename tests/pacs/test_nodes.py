"""The node list, AE title rules and where secrets go (keyring, 0600 file, session), without a PACS."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from viewer.errors import ViewerError
from viewer.pacs import credentials
from viewer.pacs.credentials import SecretStore
from viewer.pacs.nodes import Node, NodeBook, validate_ae_title
from viewer.pacs.query import dicom_date


@pytest.mark.parametrize("title", ["ORTHANC", "A", "SIXTEEN_CHARS_OK", "  PADDED  ", "with space"])
def test_valid_ae_titles(title: str) -> None:
    assert validate_ae_title(title) == title.strip(" ")


@pytest.mark.parametrize(
    ("title", "why"),
    [
        ("SEVENTEEN_CHARS_X", "at most 16"),
        ("", "only spaces"),
        ("    ", "only spaces"),
        ("BACK\\SLASH", "backslash"),
        ("ÄRZTE", "not printable ASCII"),
        ("TAB\tAE", "not printable ASCII"),
    ],
)
def test_invalid_ae_titles(title: str, why: str) -> None:
    with pytest.raises(ViewerError, match=why):
        validate_ae_title(title)


def test_node_validation() -> None:
    with pytest.raises(ViewerError, match="neither|AE title, host and port, or a DICOMweb URL"):
        Node("empty").validated()
    with pytest.raises(ViewerError, match="both the AE title and the host"):
        Node("half", ae_title="PACS").validated()
    with pytest.raises(ViewerError, match="not a TCP port"):
        Node("port", ae_title="PACS", host="h", port=70000).validated()
    with pytest.raises(ViewerError, match="not in the URL"):
        Node("url", web_url="https://u:p@pacs.example/dicom-web").validated()
    with pytest.raises(ViewerError, match="needs a user name"):
        Node("basic", web_url="https://pacs.example/dicom-web", auth="basic").validated()
    node = Node("ok", web_url="https://pacs.example/dicom-web/", auth="bearer").validated()
    assert node.web_url == "https://pacs.example/dicom-web" and not node.has_dimse


def test_node_book_round_trip_is_private(_private_pacs_config: Path) -> None:
    book = NodeBook()
    book.put(Node("a", ae_title="PACS", host="pacs.example", port=11112))
    book.put(Node("b", web_url="http://h/dicom-web"))
    book.put(Node("a", ae_title="PACS2", host="pacs.example"))  # replaces
    assert [(n.name, n.ae_title) for n in book.load()] == [("b", ""), ("a", "PACS2")]
    assert stat.S_IMODE(book.path.stat().st_mode) == 0o600
    assert book.path.parent == _private_pacs_config
    book.remove("b")
    with pytest.raises(ViewerError, match="Unknown PACS node"):
        book.get("b")


def test_without_keyring_a_secret_goes_to_a_private_file() -> None:
    store = SecretStore()
    assert not credentials.keyring_usable()
    assert store.put("n", "s3cret") == credentials.FILE
    assert stat.S_IMODE(store.file.stat().st_mode) == 0o600
    assert store.get("n", credentials.FILE) == "s3cret"
    store.delete("n")
    assert store.get("n", credentials.FILE) is None


def test_session_secret_is_never_written() -> None:
    store = SecretStore()
    assert store.put("n", "s3cret", "session") == credentials.SESSION
    assert store.get("n", credentials.SESSION) == "s3cret" and not store.file.exists()
    store.delete("n")
    assert store.get("n", credentials.SESSION) is None


class _MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


def test_a_usable_keyring_keeps_the_secret() -> None:
    ring = _MemoryKeyring()
    keyring.set_keyring(ring)
    store = SecretStore()
    assert store.put("n", "s3cret") == credentials.KEYRING
    assert ring.items == {(credentials.SERVICE, "n"): "s3cret"} and not store.file.exists()
    assert store.get("n", credentials.KEYRING) == "s3cret"
    store.delete("n")
    assert ring.items == {}


def _cli(capsys, monkeypatch, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    import io

    from viewer.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_nodes_add_list_remove(capsys, monkeypatch, _private_pacs_config: Path) -> None:
    code, out, _ = _cli(
        capsys,
        monkeypatch,
        "pacs",
        "nodes",
        "add",
        "web",
        "--web-url",
        "http://127.0.0.1:9/dicom-web",
        "--auth",
        "basic",
        "--user",
        "gru",
        stdin="top-secret\n",
    )
    assert code == 0 and "no usable keyring here" in out and "0600" in out
    code, out, _ = _cli(
        capsys, monkeypatch, "pacs", "nodes", "add", "dimse", "--ae-title", "PACS", "--host", "h"
    )
    assert code == 0 and "DIMSE PACS@h:104 as GRUVIEWER" in out
    code, out, _ = _cli(capsys, monkeypatch, "pacs", "nodes", "list")
    assert "web: DICOMweb http://127.0.0.1:9/dicom-web (basic auth as gru)" in out and "top-secret" not in out
    nodes_text = (_private_pacs_config / "pacs-nodes.json").read_text()
    assert "top-secret" not in nodes_text and json.loads(nodes_text)["nodes"][0]["secret_store"] == "file"
    code, out, err = _cli(
        capsys, monkeypatch, "pacs", "nodes", "add", "bad", "--ae-title", "X" * 17, "--host", "h"
    )
    assert code == 1 and "at most 16" in err
    code, out, _ = _cli(capsys, monkeypatch, "pacs", "nodes", "remove", "web")
    assert code == 0 and SecretStore().get("web", credentials.FILE) is None


def test_dates() -> None:
    assert dicom_date("2024-03-01", "d") == "20240301" and dicom_date(None, "d") == ""
    with pytest.raises(ViewerError, match="YYYY-MM-DD"):
        dicom_date("2024-13-01", "--date-from")
