"""``python -m mpbackend``: the ``mpbackend`` command (see ``mpbackend.read.cli``)."""

from mpbackend.read.cli import main

if __name__ == "__main__":
    main()
