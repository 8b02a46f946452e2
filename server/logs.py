"""Server logging: one line per event on stderr, with the process id (workers share a terminal)."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(),
                        format="%(asctime)s %(levelname)s tiergate[%(process)d]: %(message)s")
