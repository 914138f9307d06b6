"""``python -m viewer`` is the same as the ``gru-viewer`` command.

Guarded: the decoding processes (:mod:`viewer.dicom.decode_pool`) import the parent's main module as
``__mp_main__`` when they start, and must not run the command again.
"""

import sys

from viewer.cli import main

if __name__ == "__main__":
    sys.exit(main())
