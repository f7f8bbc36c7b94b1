"""Core sub-commands (encoders, encode, cache); feature modules register their own."""


def register(sub) -> None:  # filled in by the foundation commit
    pass
