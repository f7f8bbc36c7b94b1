"""Layer 0: what every other layer may use: typed one-sentence errors, shared contracts, paths, device choice."""
