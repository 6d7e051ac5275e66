"""``python -m edgepack.cli``: the same as the ``edgepack`` command."""

import sys

from .main import main

sys.exit(main())
