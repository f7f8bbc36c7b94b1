"""Training loops over videos or features (temporal adapter, 2D-TAN grounding head)."""
