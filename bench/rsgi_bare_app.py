"""The bare Flask reference behind the production serving's front (`simkit.rsgi_front`).

So that the reference pays what the sims pay under `--serving granian`: the body read on the
event loop, the app run on a pool thread.
"""

from __future__ import annotations

from bench.bare_app import create_app
from simkit.rsgi_front import RsgiFront, front_for


def create_rsgi() -> RsgiFront:
    """`bench.bare_app`'s app behind the front, bodies capped as the sims cap theirs."""
    return front_for(create_app())
