"""Entry point of the PyInstaller bundle: the same ``main()`` as the ``gru-viewer`` command."""

import sys

from viewer.cli import main

if __name__ == "__main__":
    sys.exit(main())
