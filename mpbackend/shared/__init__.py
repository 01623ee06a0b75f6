"""What both processes share: the protocol and nothing that runs on either side alone.

    user process ----------------------------------------- service process
    messages  the records and requests on rec_q, the replies on rsp_q
    queues    rec_q (BatchQueue) and rsp_q (ReplyQueue) themselves
    settings  every knob, built in the user process, handed to the service
    errors    the exceptions, and how one raised in the service reaches the caller
    metrics   define_metric's rules (the user checks them, the service applies them)
    paths     where a run lives on disk; states: a run's states
    entry     the service process's entry point, by name
    version   the version both sides check at ensure-up

Nothing here imports the user side (``mpbackend.user``), the service
(``mpbackend.service``), the store or the readers; the import contracts in
``pyproject.toml`` check that in CI.
"""
