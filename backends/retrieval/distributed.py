"""Feature extraction on Ray (optional: `pip install "momentlens[ray]"`), for libraries one machine is too slow for.

A Ray Data pipeline over the files to encode: `ray.data.from_items(files)`, then `map` with `decode_task` (a CPU
task per file: `features.decode_video` for the encoder's input size, rate and cropped bars, no model loaded),
then `map_batches` over an actor pool of encoders (one model load per actor; one GPU per actor when the cluster
has GPUs) that runs the same `features.encode_video` on those frames (`decoded=`), writing into the feature
cache at `cache_root`, so features are identical to the single-machine path's; on a cluster that folder must be
one every node can read and write (NFS or the like). Decoded frames travel through Ray's object store (a
10-minute video at 1 fps and 224 px: about 90 MB). A file that fails (to decode or to encode) comes back as an
error row with its one-sentence reason; it never stops the job. Nothing here is imported by the single-machine
path.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from backends.core.errors import MissingDependencyError, MomentLensError, VideoError

log = logging.getLogger(__name__)
DECODE_CPUS = 0.5


class RayConnectionError(MomentLensError):
    """The Ray cluster given to --ray could not be reached or refused this machine."""


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing answers at a HOST:PORT (or ray://HOST:PORT) address: Ray's own client retries
    for minutes before giving up. "auto" and other forms are left to Ray."""
    import socket  # noqa: PLC0415 - only on this optional path

    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise RayConnectionError(f"nothing answers at {address} ({err.strerror or type(err).__name__}); start the "
                                 f"cluster's head there (`ray start --head --port {port}`) or check the address.") from err


def _node() -> str:
    """This Ray worker's machine and Ray node (host:node-id prefix; two nodes can share a host)."""
    import ray  # noqa: PLC0415 - runs inside a Ray worker

    return f"{os.uname().nodename}:{ray.get_runtime_context().get_node_id()[:8]}"


def decode_task(row: dict[str, Any], spec: dict[str, Any], fps: float, cache_root: str) -> dict[str, Any]:
    """One file decoded for the encoder `spec` (a CPU task): the frames and what encoding them needs, or the
    reason it failed."""
    os.environ["MOMENTLENS_CACHE"] = cache_root  # borders are looked up / cached like on the driver
    from backends.features import EncoderSpec, decode_video  # noqa: PLC0415 - imported in the task's process

    path = str(row["path"])
    try:
        d = decode_video(path, EncoderSpec(**spec), fps)
    except VideoError as err:
        return {"path": path, "reason": str(err), "decoded": None, "node": _node()}
    return {"path": path, "reason": "", "decoded": d, "node": _node()}


class EncoderActor:
    """One encoder per Ray actor; `__call__` encodes a batch of files into the shared feature cache."""

    def __init__(self, encoder: str, fps: float, cache_root: str):
        os.environ["MOMENTLENS_CACHE"] = cache_root  # this process's cache: the driver's folder
        from backends.encoders import cached_encoder  # noqa: PLC0415 - imported in the actor's process

        self.encoder = cached_encoder(encoder)
        self.fps = fps

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from backends.features import encode_video  # noqa: PLC0415 - imported in the actor's process
        from backends.retrieval.library import clip_vectors  # noqa: PLC0415 - imported in the actor's process

        rows: dict[str, list] = {k: [] for k in ("path", "status", "reason", "content_hash", "duration", "clips", "node")}
        for path, reason, decoded, node in zip(batch["path"], batch["reason"], batch["decoded"], batch["node"]):
            path = str(path)
            if decoded is None:
                values = ("error", str(reason), "", 0.0, 0)
            else:
                try:
                    feats = encode_video(path, self.encoder, fps=self.fps, show_progress=False, decoded=decoded)
                    values = ("ok", "", feats.content_hash, float(feats.duration), len(clip_vectors(feats)[0]))
                except VideoError as err:
                    values = ("error", str(err), "", 0.0, 0)
            rows["path"].append(path)
            for key, value in zip(("status", "reason", "content_hash", "duration", "clips"), values):
                rows[key].append(value)
            rows["node"].append(f"{node} -> {_node()}")  # decoded on -> encoded on
        return rows


def _spec(encoder: str) -> dict[str, Any]:
    """The encoder's decode spec (id, input size, clip length, frame rate), from the driver's encoder."""
    from dataclasses import asdict  # noqa: PLC0415 - with the rest of this optional path

    from backends.encoders import cached_encoder  # noqa: PLC0415 - the driver loads it once for the library anyway
    from backends.features import EncoderSpec  # noqa: PLC0415

    return asdict(EncoderSpec.of(cached_encoder(encoder)))


def encode_on_ray(files: list[Path], encoder: str, fps: float, cache_root: Path, address: str | None = None,
                  actors: int | None = None) -> list[dict[str, Any]]:
    """Encode `files` on Ray (a local Ray when `address` is None or "local", else the cluster at `address`);
    one row per file: {path, status, reason, content_hash, duration, clips, node}."""
    try:
        import ray  # noqa: PLC0415 - optional dependency, imported only when --ray is asked for
    except ImportError as err:
        raise MissingDependencyError("Ray is not installed: pip install 'momentlens[ray]' (or ray[data]), or index "
                                     "without --ray.") from err
    if not files:
        return []
    started_here = not ray.is_initialized()
    if started_here:
        local = address in (None, "", "local")
        if not local:
            check_reachable(str(address))
        try:
            ray.init(address=None if local else address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, ray.exceptions.RayError) as err:  # no head there, or it refused our token
            if local:
                raise
            raise RayConnectionError(
                f"could not join the Ray cluster at {address} ({type(err).__name__}); check that its head is running "
                f"(`ray status --address {address}`) and, as Ray starts clusters with token authentication, run with "
                "RAY_AUTH_MODE=token and the cluster's token in ~/.ray/auth_token (or RAY_AUTH_TOKEN).") from err
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        # one encoder per GPU; on CPUs one per CPU but one, which the decode tasks use
        n = actors or max(1, min(len(files), gpus or int(resources.get("CPU", 1)) - 1))
        log.info("ray: %d encoder actors over %d files (%d GPUs in the cluster)", n, len(files), gpus)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # `index add` shows its own progress
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ds: Any = ray.data.from_items([{"path": str(f)} for f in files])
        # decode tasks ask for half a CPU: decoding at a library's rate (1 fps) is light, and remote arguments that
        # differ from the actors' keep Ray Data from fusing the two stages (it would decode inside the actors)
        ds = ds.map(decode_task, fn_kwargs={"spec": _spec(encoder), "fps": fps, "cache_root": str(cache_root)},
                    num_cpus=DECODE_CPUS)
        ds = ds.map_batches(EncoderActor, fn_constructor_kwargs={"encoder": encoder, "fps": fps,
                                                                 "cache_root": str(cache_root)},
                            batch_size=1, batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=n),
                            num_gpus=1 if gpus else 0, num_cpus=1)
        return [dict(r) for r in ds.take_all()]
    finally:
        if started_here:
            ray.shutdown()
