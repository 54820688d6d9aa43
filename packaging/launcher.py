"""Entry point of the frozen (PyInstaller) app: the same main() as the ``penwright`` command."""

import sys

from assistant.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
