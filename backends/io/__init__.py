"""Layer 1: bytes on disk: streaming video decode/encode, browser playback copies, the feature cache, checkpoint loading."""
