"""Help ▸ How to Read the Analysis: what the finding, the gate traces and the saliency maps mean, and their limits."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

HELP_HTML = """
<h2>How to read the analysis</h2>

<p style="background:#3a2e10; color:#f0d9a0; padding:6px;">
<b>Not for diagnosis.</b> The default model learned from <b>synthetic phantoms</b> (computer-made head CT
studies), not from patients. Use it to explore how a recurrent model reads a study, never to decide care.</p>

<h3>The finding</h3>
<p>The model gives one <b>probability</b> that the series shows an intracranial bleed. When it is at or above the
model's <b>operating threshold</b> the panel says <i>Bleed suspected</i>, otherwise <i>No bleed detected</i>.
The threshold was chosen on validation phantoms; a probability near it is an uncertain call either way.
The <b>per-slice probability</b> plot shows the same score for each slice.</p>

<p>Amber boxes list <b>intended-use warnings</b>: ways this series differs from what the model was made for
(not CT, not axial, too few slices, too thin a coverage, …). The result is still shown, but it deserves less
trust. A note also says when the GPU failed and the analysis ran on the CPU instead.</p>

<h3>Slices and directions</h3>
<p>Every plot has the slice number on its horizontal axis, numbered as in the viewer (1 = first slice of the
series). The vertical line is the slice on screen; click a plot to go to that slice. <b>Key slices</b> (the
ones the finding depends on most) are marked on the plots and as ticks under the slice slider.</p>
<p>The model is a <b>bidirectional GRU</b>: a small image network turns each slice into a feature vector, and two
recurrent readers go through the slices, the <b>forward</b> one from slice 1 to the last, the <b>reverse</b>
one from the last slice back to slice 1.</p>

<h3>Gates</h3>
<p>At every slice each reader updates its memory (the hidden state <i>h</i>) with
<b>h<sub>t</sub> = (1 − z<sub>t</sub>) · n<sub>t</sub> + z<sub>t</sub> · h<sub>t−1</sub></b>
(PyTorch's convention):</p>
<ul>
<li><b>Update gate z</b>: <b>1 = keep the previous state</b>, 0 = replace it with the new candidate
<i>n</i> made from this slice. A dip in z means the reader rewrote its memory at that slice.</li>
<li><b>Reset gate r</b>: how much of the previous state enters the candidate (1 = all of it, 0 = the candidate
is made from this slice alone).</li>
</ul>
<p>The traces show the mean over the units; the heatmap shows every unit (rows) at every slice (columns).
Some articles write the update the other way round, so their z is 1 − z here.</p>

<h3>Hidden-state saliency</h3>
<p>How strongly the study score depends on each slice's hidden state (the size of the gradient of the study
logit with respect to h<sub>t</sub>), per direction and combined, scaled to 0–1. High values mark the slices
whose memory mattered for the finding. Each reader carries its memory on, so the slices it reads
<i>before</i> a finding count too: the forward track often stays high from slice 1 down to a bleed and the
reverse track from the last slice back to it, and falls once the reader has passed it. The key slices are
therefore not taken from this plot but from the study score itself: the slices with its largest shares (the
highest slice probabilities).</p>

<h3>Pixel saliency (colour overlay)</h3>
<p>The coloured map over the image shows where, inside a slice, a small change of the pixel values would change
the model's score most (the legend names the exact method). It is scaled per slice so its strongest pixels are 1;
pixels below the threshold slider are left transparent. Press <b>O</b> to show or hide it.</p>

<h3>Limits</h3>
<ul>
<li>A saliency map shows <b>where the gradient is large, not proof</b> of a bleed, and not what a radiologist
would call the lesion. Maps are noisy and can highlight edges, bone or artefacts.</li>
<li>Gates describe how the model processes the series; they are not anatomical or clinical measurements.</li>
<li>Maps are scaled per slice: colours cannot be compared between slices or series.</li>
<li>The default weights were trained on synthetic phantoms only. Results on real patients are unknown.
<b>Not for diagnosis.</b></li>
</ul>
"""


class AnalysisHelpDialog(QDialog):
    """A non-modal dialog with :data:`HELP_HTML` in a text browser."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("How to Read the Analysis")
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        self.browser.setHtml(HELP_HTML)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        self.resize(640, 720)


def show_analysis_help(parent: QWidget | None = None) -> AnalysisHelpDialog:
    """Open the help page (non-modal, deleted on close) and return it."""
    dialog = AnalysisHelpDialog(parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.show()
    return dialog
