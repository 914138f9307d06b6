"""The DICOMweb secret of a PACS node, as the windows ask for it: the saved one, else asked once and kept for
this session only (never written where it was not saved before)."""

from __future__ import annotations

from PySide6.QtWidgets import QInputDialog, QLineEdit, QWidget

from viewer.pacs.credentials import SESSION, SecretStore
from viewer.pacs.nodes import Node


def ask_secret(parent: QWidget, node: Node, known: dict[str, str | None]) -> tuple[bool, str | None]:
    """``(go on, secret)`` for ``node``. A node with a DIMSE address is used by DIMSE and needs none; ``known``
    caches answers per node name for the asking window.

    Raises
    ------
    ViewerError
        The secret store could not be read (the caller shows it; the user is then asked).
    """
    if node.auth == "none" or node.has_dimse:
        return True, None
    if node.name in known:
        return True, known[node.name]
    store = SecretStore()
    secret = store.get(node.name, node.secret_store) or store.get(node.name, SESSION)
    if secret is None:
        text, ok = QInputDialog.getText(
            parent, "PACS secret", f"Password or token for {node.name}:", QLineEdit.EchoMode.Password
        )
        if not ok:
            return False, None
        store.put(node.name, text, SESSION)
        secret = text
    known[node.name] = secret
    return True, secret
