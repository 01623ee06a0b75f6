"""``python -m mpbackend``: the ``mpbackend`` command (see ``mpbackend.cli``)."""

from mpbackend.read.cli import main

if __name__ == "__main__":
    main()
