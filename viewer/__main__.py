"""``python -m viewer`` is the same as the ``gru-viewer`` command."""

import sys

from viewer.cli import main

sys.exit(main())
