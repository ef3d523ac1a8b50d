"""``python -m florence_ui``: the same CLI as the ``florence-ui`` console script."""

import sys

from .cli import main

sys.exit(main())
