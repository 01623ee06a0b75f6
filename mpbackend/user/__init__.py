"""The user process: everything that runs in the training process (and its children).

    mpbackend.init() --> init --> setup (one per process) --> manager --> launcher
                                                                 (starts the service)
    Run.log / config / summary --> values (checked at the call) --> interface
        --> buffer --(sender thread)--> rec_q --> the service (mpbackend.service)
    Run.flush / finish --> manager --> interface.communicate --> rec_q
        <-- router thread <-- rsp_q: replies, Committed, Notices
    a child process --> child.rebuild: its own interface on the same rec_q

Modules: ``setup``, ``manager``, ``launcher``, ``interface``, ``router``, ``run``
(Run, DisabledRun), ``init``, ``config``, ``summary``, ``values``, ``child``,
and ``spawnmain``/``childmain`` (spawned children of a script without a main
guard). This package imports ``mpbackend.shared``, and ``mpbackend.read`` for
the end summary, never the service or the store (``pyproject.toml``'s contracts).
"""
