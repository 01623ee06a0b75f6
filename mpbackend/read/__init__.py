"""Reading runs back, in any process, live runs included: nothing here talks to the service.

    run.db --mpbackend.store.reader.RunReader--> api (Api, ApiRun: DataFrames, filters)
                                             --> cli (the ``mpbackend`` command)
                                             --> report (PNG plots, the HTML report)
                                             --> end_summary (the lines shown as a run ends)
    format: how every reader writes a value and a duration

This package imports ``mpbackend.shared`` and ``mpbackend.store``, never the
user side or the service (``pyproject.toml``'s contracts).
"""
