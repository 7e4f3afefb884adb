"""Named points where a test can have this process SIGKILL itself.

Kill safety is a claim about *every* moment of a run: set building, compression,
evaluation, the store's write, an artifact half on disk.  Killing a subprocess
after a timer lands wherever the scheduler happens to be; a failpoint lands
exactly where the test says.  ``CALIBENCH_FAILPOINT=NAME`` kills at the first
time NAME is reached, ``NAME:K`` at the K-th.  Unset (always, outside tests),
:func:`reach` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "CALIBENCH_FAILPOINT"
_hits: dict[str, int] = {}


def reach(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    target, _, count = wanted.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
