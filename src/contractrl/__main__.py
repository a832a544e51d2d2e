"""``python -m contractrl``: the ``contractrl`` command line."""

from contractrl.experiments.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
