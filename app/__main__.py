"""`python -m app [--host ...] [--port ...] [--share] [--auth USER:PASS] [--encoder NAME] [--video PATH]`."""

import sys

from app.cli import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
