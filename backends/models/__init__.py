"""Layer 3: trainable torch modules and their checkpoint formats (temporal adapter, 2D-TAN grounding head)."""
