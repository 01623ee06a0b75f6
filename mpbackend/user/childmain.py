"""Run by multiprocessing as ``__mp_main__`` in a spawned child of a script without a
main guard: it executes the script's definitions only (see ``mpbackend.spawnmain``).
Nothing imports this module."""

from mpbackend.user.spawnmain import run_definitions

run_definitions(globals())
