"""The Gradio web app: `build_app()` assembles one module per tab (see `app/blocks.py`).

Importing `app` stays light (the `momentlens` command line lists `momentlens app` without loading
Gradio); `build_app` is imported on first use.
"""

from __future__ import annotations

__all__ = ["build_app"]


def __getattr__(name: str):
    if name == "build_app":
        from app.blocks import build_app  # deferred: importing Gradio takes seconds; the CLI only lists `app`

        return build_app
    raise AttributeError(f"module 'app' has no attribute {name!r}")
