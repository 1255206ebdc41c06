"""``python -m robench``: the ``robench`` command line (:func:`robench.cli.main`)."""

import sys

from robench.cli import main

if __name__ == "__main__":
    sys.exit(main())
