"""The benchmarks behind ``make bench`` (``gru-viewer bench``), one module per suite, and their runner.

Suites: ``index`` (header index), ``load`` (series loading), ``gui`` (the window), ``model`` (the model core)
and ``analysis`` (Analyze end to end); :mod:`viewer.bench.runner` runs them and flattens the results into one
table. The package sits at the top of the layers and may import any of the app; the GUI suite drives the window
through :mod:`viewer.ui.measure`, so that Qt is still imported only under ``viewer/ui``. Test data comes from
:mod:`viewer.synth`.
"""
