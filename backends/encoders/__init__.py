"""Encoders: one registry, one factory.

>>> enc = create_encoder("conse-effnet-minilm")     # or "clip:ViT-B/32", "clip:/path/model.pt", None = default
>>> enc.encode_frames(frames_uint8)  # (T, D) float32, L2-normalised
>>> enc.encode_text(["a dog"])       # (1, D)

Importing a family's module registers its builders; the import order below is the order users see.
"""

# isort: off
from backends.encoders import conse, clip_encoder, tiny, adapter, video  # noqa: F401  (registers the builders)

# isort: on
from backends.encoders.base import (
    Encoder,
    cached_encoder,
    cached_models,
    canonical_encoder_name,
    create_encoder,
    default_encoder_name,
    encoder_available,
    list_encoders,
    offline_encoder_names,
    register_encoder,
    registry,
)

__all__ = [
    "Encoder",
    "cached_encoder",
    "cached_models",
    "canonical_encoder_name",
    "create_encoder",
    "default_encoder_name",
    "encoder_available",
    "list_encoders",
    "offline_encoder_names",
    "register_encoder",
    "registry",
]
