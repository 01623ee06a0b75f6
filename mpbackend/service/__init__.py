"""The service process: the one process that keeps step and summary state and writes runs.

    rec_q --> mux (reader thread --> inbox --> StreamMux, the main loop)
                  --> internal.Internal (one per run: wandb's step rules, the summary)
                  --> mpbackend.store.writer.RunWriter --> run.db
    rsp_q <-- mux: Ready, Response(uuid), Committed(seq), Notice
    mux: watchdog thread (the user process's pidfd); system: the system-metrics thread

Entered through ``mpbackend.shared.entry.serve``. This package imports
``mpbackend.shared`` and ``mpbackend.store``, never the user side or the readers
(``pyproject.toml``'s contracts), so a spawned service loads only what it runs.
"""
