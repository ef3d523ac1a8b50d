"""Start the florence-ui web app from a checkout: ``python app.py --model base`` (or ``make run``).

A thin wrapper: the options and the start-up live in :mod:`florence_ui.ui.serve`,
which pip users reach as ``florence-ui serve`` (same flags), so both ways of
starting the app stay identical.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from florence_ui.ui import serve


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return serve.parse_args(argv, prog="app.py")


def main(argv: Sequence[str] | None = None) -> int:
    return serve.main(argv, prog="app.py")


if __name__ == "__main__":
    sys.exit(main())
