"""`python -m backends` is the `momentlens` command."""

from backends.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
