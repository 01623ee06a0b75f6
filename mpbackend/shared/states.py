"""A run's states: what the service stores, the user's Run reports and readers filter on.

    running --finish()--------------------> finished | failed (non-zero exit code)
            --Ctrl-C / SIGTERM-------------> interrupted
            --the training process or the service dies--> crashed
"""

from __future__ import annotations

RUNNING = "running"
TERMINAL_STATES = ("finished", "failed", "crashed", "interrupted")
STATES = (RUNNING, *TERMINAL_STATES)
