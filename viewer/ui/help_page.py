"""Help ▸ How to Read the Analysis: what the finding, the gate traces, the hidden-state evidence and the saliency maps
mean, and their limits."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from viewer.ui.text_dialog import TextDialog, show_non_modal

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

<p>Amber boxes list <b>intended-use warnings</b>: ways this series differs from what the model was made for.
When the series is outside the intended use (not CT or not HU, not axial, too little coverage, a field of view or
matrix far from a head's, values that are not a head's) the panel says <i>Not assessed</i> and gives no finding;
the plots stay, labelled <i>for study only: outside intended use</i>. A lesser difference (slices somewhat thicker
than the model's slabs) keeps the finding, which then deserves less trust. A note also says when the GPU failed
and the analysis ran on the CPU instead.</p>

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

<h3>Hidden-state evidence</h3>
<p>How much each slice's memory adds to the finding, in the units of the study score (logit; a study logit of 0 is
a probability of 0.5), compared with the model's <b>average normal head</b> (the mean of normal phantom series,
matched to this series by relative position). The plot shows it per reader and combined (their sum) on one fixed
axis, with a line at 0; the same values colour the strip along the slice slider and stand in the corner text and
after the value under the cursor.</p>
<ul>
<li><b>Positive</b> (warm on the slider): what the reader remembers at this slice pushes the study <b>towards
a bleed</b>.</li>
<li><b>Negative</b> (cool): the slice looks more normal than the average normal head does, to the model; it
pushes <b>against a bleed</b>.</li>
<li><b>Near 0</b>: nothing the score cares about differs from a normal head here. A normal series stays flat
near 0: the scale is not stretched per series.</li>
<li><b>Direct and carried</b> (the plot's combo): <i>direct</i> is what the per-slice read-out uses at this very
slice; <i>carried</i> is passed on in the reader's memory and used at the slices it reads later. Both stay on the
slice whose memory holds the evidence.</li>
</ul>
<p><b>Its limits.</b> It is a one-step estimate (one-step conductance): summed over all slices and both readers
it overshoots the real change of the study logit by about 10 % on validation phantoms, so read the bars as
relative sizes, not exact parts of the score. It explains the model, not the anatomy: whatever the model takes
for blood gets a positive bar, a bleed it misses gets little. It depends on the reference normal series.
The key slices are taken from the study score itself (the slices with its largest shares).</p>
<p><b>Gates are activations, not attribution.</b> The gate plots show what the GRU computed, not why it decided:
the gates of a randomly initialised GRU separate bleed slices about as well.</p>

<h3>Pixel saliency (colour overlay)</h3>
<p>The coloured map over the image shows where, inside a slice, a small change of the pixel values would change
the model's score most (the legend names the exact method). By default it is <b>scaled to the series</b>: each
slice's map is drawn at the strength of that slice's bleed probability, so a slice the model finds normal stays
dark and slices can be compared. <b>Scaled per slice</b> (the combo beside the overlay switch, or Tools ▸
Preferences) shows every slice's own strongest pixels at full strength, a normal slice's noise too. The legend
says which is in use; pixels below the threshold slider are left transparent. Press <b>O</b> to show or hide it,
together with the slider strip and the analysis lines of the corner text.</p>

<h3>Limits</h3>
<ul>
<li>A saliency map shows <b>where the gradient is large, not proof</b> of a bleed, and not what a radiologist
would call the lesion. Maps are noisy and can highlight edges, bone or artefacts.</li>
<li>Gates describe how the model processes the series; they are not anatomical or clinical measurements.</li>
<li>Scaled per slice, colours cannot be compared between slices or series; scaled to the series, a slice's
colour follows its probability, not the raw size of its gradient (which is smallest where the model is surest).</li>
<li>The default weights were trained on synthetic phantoms only. Results on real patients are unknown.
<b>Not for diagnosis.</b></li>
</ul>
"""


class AnalysisHelpDialog(TextDialog):
    """A non-modal dialog with :data:`HELP_HTML` in a text browser."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("How to Read the Analysis", (640, 720), parent)
        self.browser.setHtml(HELP_HTML)


def show_analysis_help(parent: QWidget | None = None) -> AnalysisHelpDialog:
    """Open the help page (non-modal, deleted on close) and return it."""
    return show_non_modal(AnalysisHelpDialog(parent))
