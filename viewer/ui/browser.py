"""The study browser: patient → study → series, one entry per displayable stack, with thumbnails.

Each entry reads as two lines (title, then modality · images · matrix · date), which keeps a narrow dock
legible, as in Horos' and Weasis' series lists. A series that splits into several stacks (a localizer beside the
axials, two orientations) lists each stack as its own entry. Double-click or Enter opens one; the filter matches
the text of any level (a patient's name, a study's description, a series' modality...).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QModelIndex, QSize, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QKeyEvent, QPixmap, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QLineEdit, QTreeView, QVBoxLayout, QWidget

from viewer.dicom.identifiers import display_date, display_name, display_time
from viewer.dicom.index import StudyIndex

STACK_UID_ROLE = Qt.ItemDataRole.UserRole + 1
KIND_ROLE = Qt.ItemDataRole.UserRole + 2
THUMB_SIZE = 56


def qimage_from_array(gray_or_rgb: np.ndarray) -> QImage:
    """A QImage that owns its pixels (``.copy()``: a QImage made from a numpy buffer shares its memory)."""
    arr = np.ascontiguousarray(gray_or_rgb)
    if arr.ndim == 2:
        h, w = arr.shape
        return QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_Grayscale8).copy()
    h, w, _ = arr.shape
    return QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB888).copy()


class _Tree(QTreeView):
    """A tree view where Enter/Return open the current entry, like a double-click."""

    entered = Signal(QModelIndex)

    def keyPressEvent(self, ev: QKeyEvent) -> None:  # noqa: N802 (Qt override)
        if ev.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentIndex().isValid():
            self.entered.emit(self.currentIndex())
            ev.accept()
            return
        super().keyPressEvent(ev)


def _item(text: str, tooltip: str = "") -> QStandardItem:
    it = QStandardItem(text)
    it.setEditable(False)
    if tooltip:
        it.setToolTip(tooltip)
    return it


class StudyBrowser(QWidget):
    """Signals: ``stack_activated(stack_uid)`` when the user opens an entry."""

    stack_activated = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter patients, studies, series…")
        self.filter_edit.setClearButtonEnabled(True)
        self.model = QStandardItemModel(0, 1, self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setRecursiveFilteringEnabled(True)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(0)
        self.tree = _Tree()
        self.tree.setModel(self.proxy)
        self.tree.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.tree.setUniformRowHeights(False)
        self.tree.setAlternatingRowColors(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setIndentation(14)
        self.tree.setHeaderHidden(True)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.tree.doubleClicked.connect(self._activate)
        self.tree.entered.connect(self._activate)
        self.filter_edit.textChanged.connect(self._on_filter)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.tree, 1)
        self._stack_items: dict[str, QStandardItem] = {}
        self._thumbnails: set[str] = set()
        self._placeholder = QPixmap(THUMB_SIZE, THUMB_SIZE)
        self._placeholder.fill(Qt.GlobalColor.black)

    # -- content ----------------------------------------------------------------------------------------------

    def clear(self) -> None:
        """Empty the tree and forget the stacks and thumbnails."""
        self.model.removeRows(0, self.model.rowCount())
        self._stack_items.clear()
        self._thumbnails.clear()

    def set_index(self, index: StudyIndex) -> None:
        """Fill the tree from a :class:`viewer.dicom.index.StudyIndex`."""
        self.clear()
        root = self.model.invisibleRootItem()
        placeholder = QIcon(self._placeholder)
        bold = self.font()
        bold.setBold(True)
        for patient in index.patients:
            name = display_name(patient.name) or "(no name)"
            details = " · ".join(
                v for v in (patient.patient_id, patient.sex, display_date(patient.birth_date)) if v
            )
            p_item = _item(f"{name}\n{details}" if details else name)
            p_item.setFont(bold)
            p_item.setData("patient", KIND_ROLE)
            for study in patient.studies:
                n_series = len(study.series)
                modalities = "/".join(sorted({s.modality for s in study.series if s.modality}))
                when = " ".join(v for v in (display_date(study.date), display_time(study.time)) if v)
                line2 = " · ".join(
                    v
                    for v in (
                        when,
                        modalities,
                        f"{n_series} series",
                    )
                    if v
                )
                tip = f"Accession {study.accession_number}" if study.accession_number else ""
                s_item = _item(f"{study.description or '(no study description)'}\n{line2}", tip)
                s_item.setData("study", KIND_ROLE)
                for series in study.series:
                    stacks = list(series.stacks)
                    for stack in stacks:
                        number = f"#{series.number} " if series.number is not None else ""
                        title = f"{number}{series.description or '(no description)'}"
                        if len(stacks) > 1:
                            title += f" [{stack.label}]"
                        facts = [series.modality, f"{stack.n_slices} images", f"{stack.rows}×{stack.columns}"]
                        date = display_date(series.date or study.date)
                        if date and date != display_date(study.date):
                            facts.append(date)
                        warnings = [getattr(w, "message", str(w)) for w in getattr(stack, "warnings", [])]
                        tip = "\n".join([title, " · ".join(v for v in facts if v), *warnings])
                        st_item = _item(f"{title}\n{' · '.join(v for v in facts if v)}", tip)
                        if warnings:
                            st_item.setText(st_item.text() + " · ⚠")
                        st_item.setIcon(placeholder)
                        st_item.setData(stack.uid, STACK_UID_ROLE)
                        st_item.setData("stack", KIND_ROLE)
                        s_item.appendRow(st_item)
                        self._stack_items[stack.uid] = st_item
                p_item.appendRow(s_item)
            root.appendRow(p_item)
        self.tree.expandAll()

    def set_thumbnail(self, stack_uid: str, image: np.ndarray) -> None:
        """Show a uint8 (gray or RGB) thumbnail for a stack entry."""
        item = self._stack_items.get(stack_uid)
        if item is None:
            return
        pixmap = QPixmap.fromImage(qimage_from_array(image)).scaled(
            THUMB_SIZE,
            THUMB_SIZE,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        item.setIcon(QIcon(pixmap))
        self._thumbnails.add(stack_uid)

    def has_thumbnail(self, stack_uid: str) -> bool:
        """Whether the stack's row shows a thumbnail already."""
        return stack_uid in self._thumbnails

    def stack_uids(self) -> list[str]:
        """The stacks listed, in tree order."""
        return list(self._stack_items)

    def select_stack(self, stack_uid: str) -> None:
        """Select and scroll to the stack's row (no activation); unknown uids are ignored."""
        item = self._stack_items.get(stack_uid)
        if item is None:
            return
        index = self.proxy.mapFromSource(item.index())
        if index.isValid():
            self.tree.setCurrentIndex(index)
            self.tree.scrollTo(index)

    def visible_stack_uids(self) -> list[str]:
        """Stacks the filter lets through, in tree order."""
        out: list[str] = []

        def walk(parent: QModelIndex) -> None:
            for r in range(self.proxy.rowCount(parent)):
                idx = self.proxy.index(r, 0, parent)
                uid = idx.data(STACK_UID_ROLE)
                if uid:
                    out.append(str(uid))
                walk(idx)

        walk(QModelIndex())
        return out

    # -- interaction ------------------------------------------------------------------------------------------

    def activate_index(self, index: QModelIndex) -> None:
        """Act as if the row at ``index`` (a proxy index) were double-clicked."""
        self._activate(index)

    def _activate(self, index: QModelIndex) -> None:
        uid = index.data(STACK_UID_ROLE) if index.isValid() else None
        if uid:
            self.stack_activated.emit(str(uid))

    def _on_filter(self, text: str) -> None:
        self.proxy.setFilterFixedString(text)
        self.tree.expandAll()
