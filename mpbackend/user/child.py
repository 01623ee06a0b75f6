"""A Run handed to a child process: rebuilt there, logging into the parent's service.

    parent: Process(args=(run,)) / Pool initargs / a DataLoader's Dataset (spawn,
            forkserver) --Run.__reduce__--> (spec, reply, settings, owner pid, rec_q)
    child:  rebuild() --> one Interface per service for this process (its own
            buffer and sender thread on the same rec_q) --> Run(...) as init() makes it

A forked child needs none of this: it inherits the Run itself, and the
Interface resets its buffer, lock and sender at the fork. Either way a child
publishes, but cannot ask the service anything (replies go to the parent's
router): ``flush()`` waits until the child's records are in the queue, and
``finish()`` warns and does nothing, so a child never ends the run.
"""

from __future__ import annotations

import os
from typing import Any

from ..shared.queues import BatchQueue
from ..shared.settings import Settings
from .interface import Interface
from .run import Run, make_current

# One Interface per service in this process, whatever number of Runs it is handed.
_interfaces: dict[int | None, Interface] = {}


def rebuild(spec: dict[str, Any], reply: dict[str, Any], settings: Settings, owner_pid: int,
            rec_q: BatchQueue, service_settings: Settings, service_pid: int | None) -> Run:
    """The Run unpickled in a child process; it becomes ``mpbackend.run`` if there is none.

    ``settings`` are the run's (``init(settings=...)``), ``service_settings`` those
    the service and the owner's Interface were made with (buffer, batches): the
    child's own Interface takes the latter. ``reply["state"]``: the run's state
    as it was handed over.
    """
    import mpbackend

    interface = _interfaces.get(service_pid)
    if interface is None or interface.pid != os.getpid():
        interface = _interfaces[service_pid] = Interface(rec_q, None, service_settings,
                                                         service_pid=service_pid)
    run = Run(spec, reply, settings, None, interface, owner_pid=owner_pid)
    run.state = reply.get("state", run.state)
    if mpbackend.run is None:
        make_current(run)
    return run
