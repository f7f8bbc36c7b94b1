"""momentlens backend: everything that computes (video I/O, encoders, cache, analyses, retrieval, CLI).

The front ends (`app/`, `widgets/`) call into this package; it never imports them.
"""

__version__ = "0.1.0"
