"""Integrations: first-party glue between frameworks and the Run (user process only).

Where it sits in the picture:

    training framework (torch hooks, Lightning, transformers, accelerate, Keras)
        --calls--> integrations.<framework> --Run.log / log_artifact / media-->
        the user side as any script uses it (mpbackend.user), and nothing below it

``torch_watch`` is ``watch()``: gradient and parameter histograms from torch hooks.
Each module imports its framework only when used; none is imported by
``import mpbackend``.
"""
