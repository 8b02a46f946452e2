"""Server logging: one line per event on stderr, with the process id (workers share a terminal).

`log_format = "json"` writes one JSON object a line instead, for log collectors:
{"time": RFC 3339 UTC, "level", "logger", "pid", "message"[, "exception"]}.
"""

from __future__ import annotations

import json
import logging
import sys

from tiergate.engine.timeutil import format_instant


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": format_instant(int(record.created * 1_000_000)),
               "level": record.levelname, "logger": record.name, "pid": record.process,
               "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level.upper(), handlers=[handler])
        return
    logging.basicConfig(stream=sys.stderr, level=level.upper(),
                        format="%(asctime)s %(levelname)s tiergate[%(process)d]: %(message)s")
