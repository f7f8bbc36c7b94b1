"""Encoders: one registry, one factory.

>>> enc = create_encoder("conse-effnet-minilm")     # or "clip:ViT-B/32", "clip:/path/model.pt", None = default
>>> enc.encode_frames(frames_uint8)  # (T, D) float32, L2-normalised
>>> enc.encode_text(["a dog"])       # (1, D)
"""

from backends.encoders.base import (
    Encoder,
    cached_encoder,
    create_encoder,
    default_encoder_name,
    encoder_available,
    list_encoders,
    offline_encoder_names,
    register_encoder,
    registry,
)

# Importing the builder modules registers them (order = order shown to users).
from backends.encoders import conse as _conse  # noqa: F401,E402
from backends.encoders import clip_encoder as _clip  # noqa: F401,E402
from backends.encoders import tiny as _tiny  # noqa: F401,E402

__all__ = [
    "Encoder",
    "cached_encoder",
    "create_encoder",
    "default_encoder_name",
    "encoder_available",
    "list_encoders",
    "offline_encoder_names",
    "register_encoder",
    "registry",
]

# Trained temporal adapters load as encoders too (`adapter:<checkpoint>`).
import backends.adapter as _adapter  # noqa: F401,E402
