"""What the web app offers a remote caller: the encoders and annotation files it may use, and nothing else.

A request to the web app is a stranger's. Its model and annotation choices come from what the server offers,
never from a server path the caller typed:
- encoders: the registry's offline names (CLIP models whose weights are in the CLIP cache), the encoders the
  server's owner named on the command line, the checkpoints in the models folder (`$MOMENTLENS_MODELS`), and
  adapters the app itself trained into its work folder;
- annotation files: those of the shared data folder, or a file this session uploaded; the videos they name
  are looked up inside the data folder only.
Each choice is canonicalised (one spelling per file) before anything is loaded or cached. The command line
does not go through this module: the local user owns the machine and may load any path.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from backends.core.errors import AnnotationError, CheckpointError, EncoderError, MomentLensError
from backends.core.paths import is_inside, models_dir, shared_data_dir
from backends.encoders import canonical_encoder_name, offline_encoder_names
from backends.io.atomic import copy_to_free_name
from backends.io.checkpoints import is_torchscript_archive, read_checkpoint
from backends.models.adapter import CHECKPOINT_KIND as ADAPTER_KIND
from backends.models.grounding import CHECKPOINT_KIND as HEAD_KIND
from backends.models.video import SAFETENSORS_SUFFIX, read_video_config

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
ANNOTATION_SUFFIXES = (".json", ".jsonl", ".txt")
MAX_LISTED_FILES = 200  # a models or data folder is listed up to this many files



def classify_checkpoint(path: Path) -> str | None:
    """`adapter:`, `clip:` or `video:` for a checkpoint file the app can offer as an encoder, else None.

    Reads the file's structure only (memory-mapped, tensors only: nothing is unpickled as code)."""
    return {"adapter": "adapter:", "clip": "clip:", "video": "video:"}.get(describe_checkpoint(path)["kind"])


def describe_checkpoint(path: str | os.PathLike) -> dict:
    """What a checkpoint file is and how to use it, read once without unpickling code: {"path", "name",
    "size_mb", "kind" (adapter | grounding-head | clip | video | None), "encoder" (its --encoder name, or None), "use"
    (the --encoder/--head argument), "config", "problem"}."""
    p = Path(path)
    resolved = p.resolve()
    out: dict = {"path": str(resolved), "name": p.name, "size_mb": round(p.stat().st_size / 2**20, 2),
                 "kind": None, "encoder": None, "use": None, "config": {}, "problem": None}

    def encoder(kind: str, family: str, config: dict) -> dict:
        name = f"{family}:{resolved}"
        return {**out, "kind": kind, "encoder": name, "use": f"--encoder {name}", "config": config}

    if p.suffix.lower() == SAFETENSORS_SUFFIX:  # a video encoder from `momentlens train cvrl` (JSON config, no pickle)
        try:
            cfg = read_video_config(p)
        except CheckpointError as err:
            return {**out, "problem": str(err)}
        model, training = dict(cfg.get("model") or {}), dict(cfg.get("training") or {})
        return encoder("video", "video", {
            "arch": model.get("arch"), "clip": f"{model.get('clip_len')} frames at {model.get('frame_rate')} fps",
            "input size": model.get("input_size"), "objective": training.get("objective"),
            "steps": training.get("steps"), "videos": training.get("videos"), "code": cfg.get("code_version")})
    if p.name.endswith(".resume.pt"):  # `train cvrl`'s state for --resume, beside its OUT.safetensors
        return {**out, "kind": "training state",
                "use": "momentlens train cvrl ... --out "
                       f"{shlex.quote(str(resolved.with_name(p.name[:-len('.resume.pt')] + '.safetensors')))} --resume"}
    if is_torchscript_archive(p):  # OpenAI's CLIP files are TorchScript archives
        return encoder("clip", "clip", {"format": "TorchScript archive (OpenAI CLIP release)"})
    try:
        obj = read_checkpoint(p, mmap=True)
    except CheckpointError as err:  # not a torch file, or one holding pickled code
        return {**out, "problem": str(err)}
    if isinstance(obj, dict) and obj.get("kind") == ADAPTER_KIND:
        return encoder("adapter", "adapter", {"base encoder": obj.get("encoder_id") or obj.get("encoder"),
                                               **dict(obj.get("config") or {})})
    if isinstance(obj, dict) and obj.get("kind") == HEAD_KIND:
        cfg = {"encoder": obj.get("encoder_id"), **dict(obj.get("config") or {})}
        return {**out, "kind": "grounding-head", "use": f"--head {resolved}", "config": cfg}
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if isinstance(state, dict) and ("visual.proj" in state or "visual.attnpool.c_proj.weight" in state):
        proj = state.get("visual.proj")
        return encoder("clip", "clip", {"format": "CLIP state dict",
                                        **({"visual.proj": list(proj.shape)} if proj is not None else {})})
    return {**out, "problem": f"{p.name} is neither a momentlens adapter, grounding head or video encoder nor a CLIP "
                              "checkpoint."}


def list_checkpoints(folder: str | os.PathLike | None = None) -> list[dict]:
    """`describe_checkpoint` of every checkpoint file under `folder` (default: the models folder), sorted."""
    root = Path(folder) if folder is not None else models_dir()
    if not root.is_dir():
        return []
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in CHECKPOINT_SUFFIXES)
    return [describe_checkpoint(f) for f in files[:MAX_LISTED_FILES]]


@dataclass
class ServerOffers:
    """The choices one app instance offers; `trusted_dirs` are folders only the server writes (its work folder)."""

    pinned_encoders: tuple[str, ...] = ()  # named by the server's owner (`momentlens app --encoder ...`)
    models: Path | None = field(default_factory=models_dir)
    data: Path | None = field(default_factory=shared_data_dir)
    trusted_dirs: tuple[Path, ...] = ()
    test_encoders: bool = False  # offer the registry's random test encoders too (for tests of the app)
    _classified: dict[tuple[str, int, int], str | None] = field(default_factory=dict, repr=False)

    # --- encoders --------------------------------------------------------------------------------
    def model_files(self) -> list[str]:
        """Encoder names of the checkpoints in the models folder (`adapter:/...` or `clip:/...`)."""
        if self.models is None or not self.models.is_dir():
            return []
        names = []
        files = sorted(p for p in self.models.rglob("*") if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES)
        for path in files[:MAX_LISTED_FILES]:
            st = path.stat()
            key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
            if key not in self._classified:
                self._classified[key] = classify_checkpoint(path)
            family = self._classified[key]
            if family is not None:
                names.append(f"{family}{path.resolve()}")
        return names

    def add_model(self, upload: str | os.PathLike, name: str | None = None) -> str:
        """Copy an uploaded checkpoint into the models folder (a new name if one is taken: nothing is
        overwritten) and return its encoder name; a file that is neither an adapter nor a CLIP checkpoint is
        refused (CheckpointError) and not kept."""
        if self.models is None:
            raise CheckpointError("this server has no models folder to add checkpoints to (set $MOMENTLENS_MODELS).")
        src = Path(upload)
        stem = Path(name or src.name).name
        if Path(stem).suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise CheckpointError(f"{stem} is not a checkpoint file; upload a .pt, .pth, .bin, .ckpt or .safetensors file.")
        family = classify_checkpoint(src)
        if family is None:
            raise CheckpointError(f"{stem} is neither a momentlens temporal adapter or video encoder nor a CLIP checkpoint "
                                  "(or it holds pickled code); train one with `momentlens train adapter` or `train cvrl`, "
                                  "or use a CLIP .pt file.")
        target = copy_to_free_name(src, self.models, stem)  # never over a checkpoint there, nor one added meanwhile
        return f"{family}{target.resolve()}"

    def encoder_choices(self, first: str | None = None, extra: tuple[str, ...] = ()) -> list[str]:
        """Every encoder name this server offers (`first` leads the list, `extra`: this session's adapters)."""
        names = [*self.pinned_encoders, *offline_encoder_names(test_only=self.test_encoders), *self.model_files(), *extra]
        names = list(dict.fromkeys(names))
        if first in names:
            names = [first] + [n for n in names if n != first]
        return names

    def resolve_encoder(self, choice: str | None) -> str | None:
        """The canonical name of an offered encoder (None: the server's default), or EncoderError with one
        sentence. Nothing is loaded, and the message is the same whether a typed path exists or not."""
        if choice is None or (isinstance(choice, str) and not choice.strip()):
            return None
        refusal = EncoderError(f"{str(choice)[:80]!r} is not an encoder this server offers; pick one from the list "
                               "(the server loads model files only from its models folder).")
        if not isinstance(choice, str) or len(choice) > 4096 or "\x00" in choice:
            raise refusal
        try:
            canonical = canonical_encoder_name(choice.strip())
        except (MomentLensError, OSError, ValueError):
            raise refusal from None
        offered = set()
        for name in self.encoder_choices():
            try:
                offered.add(canonical_encoder_name(name))
            except (MomentLensError, OSError, ValueError):
                continue
        if canonical in offered:
            return canonical
        family, _, arg = canonical.partition(":")
        if family == "adapter" and arg and any(is_inside(Path(arg), d) for d in self.trusted_dirs) and Path(arg).is_file():
            return canonical  # an adapter this app trained into its own work folder
        raise refusal

    # --- annotation files ----------------------------------------------------------------------
    def annotation_choices(self) -> dict[str, Path]:
        """Offered annotation files by label (their path inside the data folder)."""
        if self.data is None or not self.data.is_dir():
            return {}
        files = sorted(p for p in self.data.rglob("*") if p.is_file() and p.suffix.lower() in ANNOTATION_SUFFIXES
                       and not p.name.startswith("."))
        return {str(p.relative_to(self.data)): p for p in files[:MAX_LISTED_FILES]}

    def duration_choices(self) -> dict[str, Path]:
        """Offered Charades metadata csvs (video durations) by label."""
        if self.data is None or not self.data.is_dir():
            return {}
        files = sorted(p for p in self.data.rglob("*.csv") if p.is_file())
        return {str(p.relative_to(self.data)): p for p in files[:MAX_LISTED_FILES]}

    def resolve_annotation(self, choice: str | None, uploaded: str | os.PathLike | None = None) -> Path:
        """The file to read: this session's upload, else an offered file by label; AnnotationError otherwise."""
        if uploaded:
            return Path(uploaded)
        offered = self.annotation_choices()
        if isinstance(choice, str) and choice in offered:
            return offered[choice]
        raise AnnotationError("pick one of the annotation files this server offers, or upload your own file.")

    def resolve_durations(self, choices: list[str] | None) -> list[Path] | None:
        offered = self.duration_choices()
        picked = []
        for c in choices or []:
            if c not in offered:
                raise AnnotationError("pick the duration files from the list this server offers.")
            picked.append(offered[c])
        return picked or None

    def video_folder(self) -> Path | None:
        """Where the videos of an evaluated annotation file are looked up (nowhere outside it)."""
        return self.data
