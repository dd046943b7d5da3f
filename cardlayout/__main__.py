"""``python -m cardlayout`` is the ``cardlayout`` command."""

import sys

from cardlayout.cli import main

sys.exit(main())
