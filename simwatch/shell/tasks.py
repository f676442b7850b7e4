"""``raise_if_cancelled``: a cancellation some library swallowed is raised again.

A task's long-lived loop ends when the task is cancelled, because the cancellation
arrives as ``CancelledError`` at the task's next ``await``. A library that catches that
error and returns normally (nats-py does, in a publish waiting for a stuck flush:
``Client._flush_pending``) hands the loop back a task that is being cancelled but will
not be told again: the loop runs on and the daemon's shutdown waits for it for ever. The
task still counts the request (``Task.cancelling``, which only ``uncancel`` lowers, as
``asyncio.timeout`` and ``TaskGroup`` do for their own); a loop that may have called
such a library checks it at each turn.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` when the current task's cancellation was requested and
    not withdrawn (swallowed on the way); else nothing."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
