"""Preferences ▸ PACS: the node list (add, edit, remove, Test) and the DICOM receiver's settings.

Node edits are saved at once (as ``gru-viewer pacs nodes add|remove`` does); a secret goes to the
:class:`~viewer.pacs.credentials.SecretStore` (keyring, else a private file) and is never shown again: the
secret field of a node that has one stays empty, saying so, and is left as it is unless something is typed.
Test runs :func:`viewer.pacs.service.test` on a worker and shows its sentence, or the failure's.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from viewer.errors import ViewerError
from viewer.pacs import service
from viewer.pacs.credentials import SESSION, SecretStore, describe_store
from viewer.pacs.nodes import (
    AUTH_KINDS,
    DEFAULT_CALLING_AE,
    DEFAULT_MOVE_PORT,
    ListenerConfig,
    Node,
    NodeBook,
)
from viewer.progress import CancelFn, ProgressFn
from viewer.ui.settings import ViewerSettings
from viewer.ui.workers import Handlers, WorkerPool, WorkerThread

_NAME_ROLE = Qt.ItemDataRole.UserRole


def test_job(node: Node, secret: str | None, *, progress: ProgressFn, cancel: CancelFn) -> str:
    """Worker body: the connection test's sentence (a failure is raised as :class:`PacsError`)."""
    return service.test(node, secret)


class NodeDialog(QDialog):
    """Add or edit one node. On OK the node is validated (the dialog stays open, saying why, if it is not);
    :attr:`node` and :attr:`secret` (None: leave the stored one as it is) are then the result."""

    def __init__(self, node: Node | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Edit PACS Node" if node else "Add PACS Node")
        self.original = node
        self.node: Node | None = None
        self.secret: str | None = None
        n = node or Node(name="")
        self.name = QLineEdit(n.name)
        self.ae_title = QLineEdit(n.ae_title)
        self.ae_title.setMaxLength(16)
        self.host = QLineEdit(n.host)
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(n.port)
        self.calling_ae = QLineEdit(n.calling_ae or DEFAULT_CALLING_AE)
        self.calling_ae.setMaxLength(16)
        self.move_port = QSpinBox()
        self.move_port.setRange(1, 65535)
        self.move_port.setValue(n.move_port or DEFAULT_MOVE_PORT)
        self.web_url = QLineEdit(n.web_url)
        self.web_url.setPlaceholderText("https://pacs.example/dicom-web (optional)")
        self.auth = QComboBox()
        for kind in AUTH_KINDS:
            self.auth.addItem(kind, kind)
        self.auth.setCurrentIndex(max(0, self.auth.findData(n.auth)))
        self.username = QLineEdit(n.username)
        self.secret_edit = QLineEdit()
        self.secret_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret_edit.setPlaceholderText(
            "stored — type to replace" if n.secret_store else "password or token (not shown again)"
        )
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c62828")

        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("AE title (PACS)", self.ae_title)
        form.addRow("Host", self.host)
        form.addRow("Port", self.port)
        form.addRow("Our AE title", self.calling_ae)
        form.addRow("C-MOVE port (ours)", self.move_port)
        form.addRow("DICOMweb URL", self.web_url)
        form.addRow("Authentication", self.auth)
        form.addRow("User", self.username)
        form.addRow("Secret", self.secret_edit)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)
        self.auth.currentIndexChanged.connect(self._update_enabled)
        self._update_enabled()

    def _update_enabled(self) -> None:
        auth = str(self.auth.currentData())
        self.username.setEnabled(auth == "basic")
        self.secret_edit.setEnabled(auth != "none")

    def edited(self) -> Node:
        """The node as typed, validated.

        Raises
        ------
        ViewerError
            A field is invalid.
        """
        auth = str(self.auth.currentData())
        base = self.original or Node(name="")
        return replace(
            base,
            name=self.name.text(),
            ae_title=self.ae_title.text().strip(),
            host=self.host.text().strip(),
            port=self.port.value(),
            calling_ae=self.calling_ae.text(),
            move_port=self.move_port.value(),
            web_url=self.web_url.text().strip(),
            auth=auth,
            username=self.username.text().strip() if auth == "basic" else "",
        ).validated()

    def accept(self) -> None:
        """Validate; stay open with the reason when invalid."""
        try:
            node = self.edited()
        except ViewerError as exc:
            self.error_label.setText(str(exc))
            return
        secret = self.secret_edit.text() or None
        needs = node.auth != "none"
        kept = self.original is not None and bool(self.original.secret_store) and self.original.auth != "none"
        if needs and secret is None and not kept:
            self.error_label.setText(f"{node.auth} authentication needs a secret: type it in Secret")
            return
        self.node, self.secret = node, secret if needs else None
        super().accept()


class PacsNodesEditor(QWidget):
    """The node list with Add, Edit, Remove and Test; edits are saved to the :class:`NodeBook` at once."""

    def __init__(
        self, book: NodeBook | None = None, secrets: SecretStore | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.book = book if book is not None else NodeBook()
        self.secrets = secrets if secrets is not None else SecretStore()
        self.pool = WorkerPool(self)
        self._test_thread: WorkerThread | None = None
        self.list = QListWidget()
        self.list.setMinimumHeight(90)
        self.add_button = QPushButton("Add…")
        self.edit_button = QPushButton("Edit…")
        self.remove_button = QPushButton("Remove")
        self.test_button = QPushButton("Test")
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        for b in (self.add_button, self.edit_button, self.remove_button, self.test_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        layout.addWidget(self.result_label)
        self.add_button.clicked.connect(lambda: self.edit(None))
        self.edit_button.clicked.connect(lambda: self.edit(self.selected()))
        self.list.itemDoubleClicked.connect(lambda _item: self.edit(self.selected()))
        self.remove_button.clicked.connect(self.remove)
        self.test_button.clicked.connect(self.test)
        self.list.currentItemChanged.connect(lambda *_: self._update_enabled())
        self.reload()

    def reload(self, select: str | None = None) -> None:
        """Fill the list from the node book."""
        self.list.clear()
        try:
            nodes = self.book.load()
        except ViewerError as exc:
            nodes = []
            self.result_label.setText(str(exc))
        for node in nodes:
            item = QListWidgetItem(node.describe())
            item.setData(_NAME_ROLE, node.name)
            self.list.addItem(item)
            if node.name == select:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        self._update_enabled()

    def selected(self) -> Node | None:
        item = self.list.currentItem()
        if item is None:
            return None
        try:
            return self.book.get(str(item.data(_NAME_ROLE)))
        except ViewerError:
            return None

    @property
    def testing(self) -> bool:
        return self._test_thread is not None

    def _update_enabled(self) -> None:
        has = self.list.currentItem() is not None
        self.edit_button.setEnabled(has)
        self.remove_button.setEnabled(has)
        self.test_button.setEnabled(has and not self.testing)

    def edit(self, node: Node | None) -> NodeDialog:
        """Open the node dialog (``None``: a new node); saved when accepted."""
        dialog = NodeDialog(node, self)
        dialog.accepted.connect(lambda: self.save(dialog))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def save(self, dialog: NodeDialog) -> None:
        """Store the node (and its secret) the dialog produced."""
        node, original = dialog.node, dialog.original
        if node is None:
            return
        note = ""
        renamed = original is None or original.name != node.name
        try:
            if renamed and any(n.name == node.name for n in self.book.load()):
                raise ViewerError("A PACS node of that name exists", f"{node.name!r}: choose another name")
            if node.auth == "none":
                self.secrets.delete(node.name)
                node = replace(node, secret_store="")
            elif dialog.secret is not None:
                where = self.secrets.put(node.name, dialog.secret)
                node = replace(node, secret_store=where)
                note = "; " + describe_store(where, self.secrets.file)
            elif original is not None and original.name != node.name:  # renamed: move the stored secret
                old = self.secrets.get(original.name, original.secret_store)
                if old is not None:
                    node = replace(node, secret_store=self.secrets.put(node.name, old))
            if original is not None and original.name != node.name:
                self.book.remove(original.name)
                self.secrets.delete(original.name)
            self.book.put(node)
        except ViewerError as exc:
            self.result_label.setText(str(exc))
            return
        self.reload(select=node.name)
        self.result_label.setText(f"saved {node.name}{note}")

    def remove(self) -> None:
        """Remove the selected node and its secret."""
        node = self.selected()
        if node is None:
            return
        try:
            self.book.remove(node.name)
            self.secrets.delete(node.name)
        except ViewerError as exc:
            self.result_label.setText(str(exc))
            return
        self.reload()
        self.result_label.setText(f"removed {node.name}")

    def test(self) -> None:
        """C-ECHO (or a QIDO-RS query) the selected node on a worker; the sentence shows below the list."""
        node = self.selected()
        if node is None or self.testing:
            return
        secret = None
        if node.auth != "none" and not node.has_dimse:
            try:
                secret = self.secrets.get(node.name, node.secret_store) or self.secrets.get(
                    node.name, SESSION
                )
            except ViewerError as exc:
                self.result_label.setText(str(exc))
                return
            if secret is None:
                self.result_label.setText(f"No secret saved for {node.name}: Edit… and type it in Secret")
                return
        self.result_label.setText(f"Testing {node.name}…")
        self._test_thread = self.pool.run(
            test_job,
            node,
            secret,
            name="pacs-test",
            handlers=Handlers(
                finished=lambda _tag, text: self.result_label.setText(str(text)),
                errored=lambda _tag, exc: self.result_label.setText(str(exc)),
                stopped=self._on_test_stopped,
            ),
        )
        self._update_enabled()

    def _on_test_stopped(self, _tag: object) -> None:
        self._test_thread = None
        self._update_enabled()

    def shutdown(self) -> None:
        """Stop a test still running (the dialog is closing)."""
        self.pool.cancel_all()
        self.pool.shutdown()


class ReceiverBox(QGroupBox):
    """The DICOM receiver's settings: off by default; our AE title, interface, port, allowed calling AEs."""

    def __init__(self, settings: ViewerSettings, parent: QWidget | None = None) -> None:
        super().__init__("DICOM receiver (pushes from a PACS into the private store)", parent)
        config = settings.receiver_config()
        self.enabled = QCheckBox("Receive while the viewer runs (C-STORE SCP)")
        self.enabled.setChecked(settings.receiver_enabled)
        self.ae_title = QLineEdit(config.ae_title)
        self.ae_title.setMaxLength(16)
        self.bind = QLineEdit(config.bind)
        self.bind.setToolTip("127.0.0.1 receives from this computer only; 0.0.0.0 from every interface")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(config.port)
        self.allowed = QLineEdit(" ".join(config.allowed))
        self.allowed.setPlaceholderText("calling AE titles allowed to send, e.g. ORTHANC")
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c62828")
        form = QFormLayout(self)
        form.addRow("", self.enabled)
        form.addRow("Our AE title", self.ae_title)
        form.addRow("Interface", self.bind)
        form.addRow("Port", self.port)
        form.addRow("Accept from", self.allowed)
        form.addRow("", self.error_label)

    def config(self) -> ListenerConfig:
        """The settings as typed (``allowed``: split at spaces and commas)."""
        allowed = tuple(a for a in self.allowed.text().replace(",", " ").split() if a)
        return ListenerConfig(self.ae_title.text(), self.bind.text(), self.port.value(), allowed)

    def check(self) -> bool:
        """Whether the settings can be saved (when enabled they must be valid); says why not."""
        self.error_label.setText("")
        if not self.enabled.isChecked():
            return True
        try:
            self.config().validated()
        except ViewerError as exc:
            self.error_label.setText(str(exc))
            return False
        return True

    def save(self, settings: ViewerSettings) -> None:
        settings.receiver_enabled = self.enabled.isChecked()
        settings.set_receiver_config(self.config())
