"""``python -m estimates``: the same command line as the ``estimates`` script."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
