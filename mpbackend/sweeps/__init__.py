"""Sweeps, locally: wandb's sweep configuration, trials claimed by any number of agents.

Where it sits in the picture:

    wandb.sweep(config, project) --plan.check--> <dir>/<project>/.sweeps/<id>/sweep.json
    wandb.agent(id, function, count)   (user process, agent.py)
    mpbackend agent ID                 (command line: runs the config's program)
        --store.SweepStore.claim() under the sweep's flock--> trials/<n>.json
           (plan: grid / random / bayes (optuna) picks the next parameters)
        --the trial's run: init() takes them as its config (MPBACKEND_SWEEP_* variables)
        --store.finish(): the run's summary metric recorded with the trial
    while a trial runs (early_terminate): trials.Watch reads every trial's metric
        --hyperband.verdict--> the agent stops it (next log() raises / SIGTERM)

``plan``, ``hyperband`` and ``store`` import only ``shared`` and the store's files, so the
command line (a reader) uses them; ``agent`` is the user-side loop.
"""
