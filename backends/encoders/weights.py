"""Better weights when they exist: where each downloadable encoder's file comes from, where it goes, and the
one call that fetches it (`momentlens weights get clip:ViT-B/32`). After the fetch the registry finds the
file, and `default_encoder_name()` (the app's default) switches to CLIP ViT-B/32.

OpenAI publishes each CLIP file at `.../clip/models/<sha256>/<file>.pt`: the checksum is part of the URL.
torchvision publishes its Kinetics-400 video weights (`video:torchvision/r3d_18`, ...) as `<arch>-<first 8 hex
digits of the SHA-256>.pth`, fetched into torch's hub cache where torchvision itself would put them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backends.core.contracts import ProgressFn, StopFn
from backends.core.errors import UnknownEncoderError
from backends.encoders.base import offline_encoder_names
from backends.encoders.clip_encoder import CLIP_CACHE, clip_models, clip_weights_file
from backends.encoders.video import TORCHVISION_ARCHS, kinetics_weights_file, kinetics_weights_url
from backends.io.download import DownloadError, download


@dataclass(frozen=True)
class WeightsSource:
    encoder: str  # the registry name these weights serve, e.g. "clip:ViT-B/32"
    url: str
    sha256: str
    target: Path  # where the loader looks for the file

    def instructions(self) -> str:
        """How to place the file by hand on a machine that cannot download it."""
        checksum = f"SHA-256 {self.sha256}" if len(self.sha256) == 64 else f"SHA-256 starting {self.sha256}"
        return f"download {self.url} on a machine that is online and copy it to {self.target} ({checksum})."


def downloadable() -> list[str]:
    """Encoder names `get_weights` can fetch: OpenAI's CLIP models, then torchvision's Kinetics-400 video models."""
    return [f"clip:{name}" for name in clip_models()] + [f"video:torchvision/{a}" for a in TORCHVISION_ARCHS]


def weights_source(encoder: str, url: str | None = None, sha256: str | None = None) -> WeightsSource:
    """The published file of `encoder` (a mirror `url` and its `sha256` may replace the official ones)."""
    family, _, arg = encoder.partition(":")
    official: str | None = None
    target: Path | None = None
    arch = arg.removeprefix("torchvision/")
    if family == "clip" and arg in clip_models():
        official = clip_models()[arg]
        target, published = clip_weights_file(arg), official.split("/")[-2]
    elif family == "video" and arch != arg and arch in TORCHVISION_ARCHS:
        official, target = kinetics_weights_url(arch), kinetics_weights_file(arch)
        published = official.rsplit("-", 1)[-1].split(".")[0]  # r3d_18-b3b3357e.pth -> b3b3357e
    if official is None or target is None:
        if encoder in offline_encoder_names(test_only=True):
            raise UnknownEncoderError(f"{encoder} needs no download: its weights come with the installed packages "
                                      f"(use it as --encoder {encoder}).")
        raise UnknownEncoderError(f"no published weights for {encoder!r}; downloadable: {', '.join(downloadable())}.")
    return WeightsSource(encoder, url or official, (sha256 or published).lower(), target)


def get_weights(encoder: str, *, url: str | None = None, sha256: str | None = None, progress: ProgressFn | None = None,
                should_stop: StopFn | None = None) -> Path:
    """Fetch the weights of `encoder` into the cache the loader reads (checksum verified, atomic). Raises
    DownloadError (offline, HTTP error, wrong checksum) whose sentence says how to place the file by hand."""
    src = weights_source(encoder, url, sha256)
    try:
        return download(src.url, src.target, sha256=src.sha256, progress=progress, should_stop=should_stop)
    except DownloadError as err:
        first = str(err).rstrip(".")
        # placing the file by hand means the published file: a mirror or file:// URL that just failed is no advice
        by_hand = weights_source(encoder).instructions() if url else src.instructions()
        raise DownloadError(f"{first}{'' if first.endswith('?') else '.'} To use {encoder} here, " + by_hand) from None


__all__ = ["CLIP_CACHE", "WeightsSource", "downloadable", "get_weights", "weights_source"]
