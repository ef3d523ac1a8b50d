"""``python -m florence_ui``: the same CLI as the ``florence-ui`` console script."""

import sys

from florence_ui.cli import main

sys.exit(main())
