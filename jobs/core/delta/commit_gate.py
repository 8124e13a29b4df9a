"""A test hook: hold a delta-rs write between staging its files and committing them.

With `SAFETY_METRICS_COMMIT_GATE` set to a folder, a writer whose data files are staged
creates `<folder>/staged-<pid>-<n>` (holding the table's URI), then waits until
`<folder>/open` exists before it commits. Tests use it to kill a job in the middle of a write
and to make two jobs' commits race. Unset (always, outside tests) it does nothing.
"""

from __future__ import annotations

import itertools
import logging
import os
import time

log = logging.getLogger(__name__)
GATE_VARIABLE = "SAFETY_METRICS_COMMIT_GATE"
MAX_WAIT_SECONDS = 3600.0
_writes = itertools.count(1)


def wait_at_commit_gate(uri: str) -> None:
    """Announce a staged write and wait for the gate to open (only when the hook is set)."""
    folder = os.environ.get(GATE_VARIABLE)
    if not folder:
        return
    marker = os.path.join(folder, f"staged-{os.getpid()}-{next(_writes)}")
    with open(marker, "w") as out:
        out.write(uri)
    log.warning("%s: staged; holding the commit until %s/open exists", uri, folder)
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    while not os.path.exists(os.path.join(folder, "open")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"commit gate {folder} never opened")
        time.sleep(0.05)
