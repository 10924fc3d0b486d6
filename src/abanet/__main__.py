"""``python -m abanet``: the same command line as ``abanet``."""

import sys

from abanet.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
