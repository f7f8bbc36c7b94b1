import numpy as np
import pytest
import torch

from backends.core.errors import (
    CheckpointError,
    UnknownEncoderError,
    WeightsNotFoundError,
)
from backends.encoders import create_encoder, default_encoder_name, list_encoders
from backends.encoders.clip_encoder import tiny_random_clip
from backends.io.video import read_frames


@pytest.fixture(scope="module")
def frames(realmix_video):
    return read_frames(realmix_video, fps=0.25, size=96)[0]


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(UnknownEncoderError) as err:
        create_encoder("resnet-9000")
    for name in list_encoders():
        assert name in str(err.value)


@pytest.mark.parametrize("name", ["clip-tiny-random", "conse-tiny-random"])
def test_tiny_encoders_shapes_and_norms(name, frames):
    enc = create_encoder(name, device="cpu")
    f = enc.encode_frames(frames)
    q = enc.encode_text(["a dog on a lawn", "a red car"])
    assert f.dtype == np.float32 and f.shape == (len(frames), enc.dim)
    assert q.shape == (2, enc.dim)
    assert np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)
    # batching must not change results (a batch-size bug would show here)
    enc.batch_size = 3
    assert np.allclose(enc.encode_frames(frames), f, atol=1e-5)
    assert enc.encode_visual(frames).shape == (len(frames), enc.visual_dim)


def test_clip_loads_a_local_checkpoint_file(tmp_path, frames):
    path = tmp_path / "tiny_clip.pt"
    torch.save(tiny_random_clip(seed=3).state_dict(), path)
    enc = create_encoder(f"clip:{path}", device="cpu")
    assert enc.input_size == 32 and enc.dim == 32 and enc.id.startswith("clip:tiny_clip.pt@")
    f = enc.encode_frames(frames)
    q = enc.encode_text(["a person"])
    assert f.shape == (len(frames), 32) and q.shape == (1, 32)
    assert np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    # embeddings equal the clip package's own forward pass on the same input
    with torch.inference_mode():
        ref = enc.model.encode_image(enc.preprocess(frames)).float()
    ref = (ref / ref.norm(dim=-1, keepdim=True)).numpy()
    assert np.allclose(f, ref, atol=1e-5)


def test_clip_checkpoint_that_is_not_clip(tmp_path):
    bad = tmp_path / "not_clip.pt"
    torch.save({"weight": torch.zeros(3)}, bad)
    with pytest.raises(CheckpointError, match="not a CLIP checkpoint"):
        create_encoder(f"clip:{bad}", device="cpu")


def test_clip_name_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    import backends.encoders.clip_encoder as ce

    monkeypatch.setattr(ce, "CLIP_CACHE", tmp_path / "clip")
    monkeypatch.setattr(ce.clip_package().clip, "_download", lambda url, root: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(WeightsNotFoundError, match="place ViT-B-32.pt in"):
        create_encoder("clip:ViT-B/32", device="cpu")


def test_default_encoder_is_the_bundled_one_without_clip_weights(tmp_path, monkeypatch):
    import backends.encoders.clip_encoder as ce

    monkeypatch.setattr(ce, "CLIP_CACHE", tmp_path)
    assert default_encoder_name() == "conse-effnet-minilm"
    (tmp_path / "ViT-B-32.pt").write_bytes(b"x")
    assert default_encoder_name() == "clip:ViT-B/32"


def test_grad_cam_hooks_exist_on_every_encoder():
    for name in ["clip-tiny-random", "conse-tiny-random"]:
        enc = create_encoder(name, device="cpu")
        assert isinstance(enc.target_layer(), torch.nn.Module)
        assert isinstance(enc.image_model(), torch.nn.Module)


@pytest.fixture(scope="module")
def conse():
    return create_encoder("conse-effnet-minilm", device="cpu")


def test_conse_real_weights_see_real_frames(conse, realmix_annotations, realmix_video):
    """Real weights: realmix's box scene lands on box-like ImageNet classes and the car scene (a young man
    in a bow tie) on ties; the ConSE embeddings rank matching queries first for each frame."""
    seg = {s["id"]: s for s in realmix_annotations["segments"]}
    box, _ = read_frames(realmix_video, fps=None, start=seg["box"]["start"] + 5, max_frames=1)
    car, _ = read_frames(realmix_video, fps=None, start=seg["car"]["start"] + 1.5, max_frames=1)
    top = conse.classify(np.concatenate([box, car]), k=3)
    box_names = " ".join(n for n, _ in top[0])
    assert any(w in box_names for w in ("crate", "chest", "carton", "packet", "envelope")), top[0]
    assert "tie" in top[1][0][0], top[1]
    f = conse.encode_frames(np.concatenate([box, car]))
    q = conse.encode_text(["a wooden box", "a man wearing a bow tie"])
    s = f @ q.T
    assert s[0, 0] > s[0, 1] and s[1, 1] > s[1, 0], s
    assert f.shape[1] == 384 and conse.encode_visual(box).shape == (1, 1280)


def test_encode_text_remembers_recent_calls_and_hands_out_copies(monkeypatch):
    """A library search embeds its query once, not once more per candidate video: the last calls are remembered;
    what a caller does to the array it got never changes what the next caller gets."""
    from backends.encoders import create_encoder

    enc = create_encoder("conse-tiny-random", device="cpu")
    calls = []
    real = enc._embed_texts
    monkeypatch.setattr(enc, "_embed_texts", lambda texts: calls.append(list(texts)) or real(texts))
    a = enc.encode_text(["a dog runs"])
    a[:] = 0.0
    b = enc.encode_text(["a dog runs"])
    assert calls == [["a dog runs"]] and abs(float((b * b).sum()) - 1.0) < 1e-5
    enc.encode_text(["a dog runs", "a cat"])  # another call: embedded
    assert calls[-1] == ["a dog runs", "a cat"]


def test_the_registry_and_the_bundled_encoder_module_do_not_import_torchvision_or_clip():
    """torchvision (~1.5 s) and clip (which imports it) load only when a model needs them: commands that embed
    nothing (`index stats`, `checkpoints`, `weights list`, `--help`) start without them. The lists and URLs they
    were imported for are read from the packages' sources, and must equal the imported ones."""
    import subprocess
    import sys

    code = ("import sys, backends.encoders, backends.encoders.conse, backends.encoders.weights, backends.retrieval.library;"
            "from backends.encoders.weights import downloadable; downloadable();"
            "from backends.encoders.video import TORCHVISION_ARCHS, kinetics_weights_url;"
            "urls = [kinetics_weights_url(a) for a in TORCHVISION_ARCHS];"  # what `weights list` shows
            "print(sorted(m for m in ('torchvision', 'clip') if m in sys.modules), *urls)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split()[0] == "[]", out.stdout + out.stderr

    from backends.encoders.video import TORCHVISION_ARCHS, _kinetics_weights

    assert out.stdout.split()[1:] == [str(_kinetics_weights(a).url) for a in TORCHVISION_ARCHS]

    import clip
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    from backends.encoders.clip_encoder import clip_models
    from backends.encoders.efficientnet_lite import IMAGENET_CLASSES

    assert IMAGENET_CLASSES == tuple(_IMAGENET_CATEGORIES) and IMAGENET_CLASSES[612] == "jinrikisha"
    assert clip_models() == clip.clip._MODELS and "ViT-B/32" in clip_models()


def test_minilm_embeds_as_sentence_transformers_does():
    """The bundled encoder's text side runs all-MiniLM-L6-v2 itself (`encoders.minilm`): the same unit embeddings
    as sentence-transformers (an independent implementation of the same files), for short, accented, empty and
    over-long (truncated at 256 tokens) sentences, in any batch size."""
    from sentence_transformers import SentenceTransformer

    from backends.encoders.conse import minilm_path
    from backends.encoders.minilm import MiniLM

    sentences = ["a man with glasses", "Leaves of a tree moving in the wind.", "un café crème, naïve résumé",
                 "", "person drinking a glass of water. " * 60, "a photo of a jinrikisha.", "cars\tand  bicycles\n"]
    reference = SentenceTransformer(str(minilm_path()), device="cpu").encode(
        sentences, convert_to_tensor=True, normalize_embeddings=True)
    ours = MiniLM(minilm_path())
    for batch_size in (1, 3, 32):
        got = ours.encode(sentences, batch_size=batch_size)
        assert got.shape == (len(sentences), 384)
        assert torch.allclose(got, reference, atol=1e-5), (got - reference).abs().max()
    assert (ours.encode(sentences[:2]) @ ours.encode(sentences[:2]).T)[0, 1] < 0.9  # not one vector for all
    one = ours.encode(sentences[1])  # a single string is one sentence, not a list of characters
    assert one.shape == (384,) and torch.allclose(one, reference[1], atol=1e-5)
    assert ours.encode([]).shape == (0, 384)


def test_a_text_command_does_not_import_sentence_transformers():
    """sentence-transformers (with transformers, scikit-learn and torchvision) takes ~7 s to import: embedding a
    query with the bundled encoder must not need it (a CLI search took ~10 s, ~3 s without it)."""
    import subprocess
    import sys

    code = ("import sys; from backends.encoders import cached_encoder;"
            "q = cached_encoder('conse-effnet-minilm').encode_text(['a dog on a lawn']);"
            "print(q.shape, sorted(m for m in ('sentence_transformers', 'transformers', 'sklearn', 'torchvision')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "(1, 384) []", out.stdout + out.stderr


def test_the_app_starts_without_torchvision_or_sentence_transformers():
    """Building the web app imports neither torchvision (pytorch_grad_cam loads it on the first Grad-CAM) nor
    sentence-transformers: together ~4 s of the app's start (8.1 s -> 6.1 s to import app.blocks)."""
    import subprocess
    import sys

    code = ("import sys, app.blocks;"
            "print(sorted(m for m in ('torchvision', 'pytorch_grad_cam', 'sentence_transformers', 'transformers')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
