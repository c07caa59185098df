"""The harness's own servers log into a file, never onto the console.

During `scanpay certify` the harness runs servers of its own: the sim_trustly that pays into a
partner's CMS (werkzeug, which prints one coloured line per request to stderr unless its
logger has a handler) and, in-process, both sims (Flask logs a server error to stderr). Mixed
into certify's output they buried the scenario lines (about 220 lines a run against a
partner). `server_logs_to(path)` sends every log record of the process into `path` for the
length of a block, werkzeug's request lines included, and puts the loggers back afterwards;
the reports name the file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER_LOG = "harness-servers.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def server_logs_to(path: Path, *, root: bool = True) -> Iterator[Path]:
    """Log werkzeug's request lines (and, with `root`, every record the process logs) into
    `path` (appended; its directory made) until the block ends.

    werkzeug adds a stderr handler of its own the first time it logs, unless its logger
    already has one: so the file handler replaces werkzeug's handlers for the block, and the
    records do not propagate to a console handler someone else put on the root. `root=False`
    leaves the root logger alone (under pytest, whose handlers live there).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    werkzeug = logging.getLogger("werkzeug")
    saved = (werkzeug.handlers[:], werkzeug.propagate, werkzeug.level)
    werkzeug.handlers = [handler]
    werkzeug.propagate = False
    if werkzeug.level == logging.NOTSET:
        werkzeug.setLevel(logging.INFO)
    top = logging.getLogger()
    if root:
        top.addHandler(handler)
    try:
        yield path
    finally:
        if root:
            top.removeHandler(handler)
        werkzeug.handlers, werkzeug.propagate = saved[0], saved[1]
        werkzeug.setLevel(saved[2])
        handler.close()
