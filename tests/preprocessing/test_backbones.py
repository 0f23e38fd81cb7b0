"""Backbone registry, thumbnail properties, CLIP parity, S3D / X3D loading (tiny real models, random weights)."""

from __future__ import annotations

import hashlib
import time

import pytest
import torch
from torch.testing import assert_close

from preprocessing.backbones import BACKBONES, build_backbone, weights_sha256
from preprocessing.backbones.base import load_state_dict_file
from vidlang.errors import VidlangError

G = 8  # thumbnail grid
COLOUR, ENERGY, CHANGE = slice(0, 3 * G * G), slice(3 * G * G, 4 * G * G), slice(4 * G * G, 5 * G * G)
SHIFT, WHERE, MASS, GLOBAL = slice(320, 322), slice(322, 324), 324, 325


def solid(n: int, f: int, h: int, w: int, rgb: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.uint8).expand(n, f, h, w, 3).clone()


def moving_square(direction: int, f: int = 3, size: int = 64, step: int = 6) -> torch.Tensor:
    """One window: a white 12x12 square on black moving horizontally (direction +1 right, -1 left)."""
    frames = torch.zeros(1, f, size, size, 3, dtype=torch.uint8)
    for t in range(f):
        x0 = size // 2 - 6 + direction * step * (t - f // 2)
        frames[0, t, 26:38, x0:x0 + 12] = 255
    return frames


# ---------------------------------------------------------------- registry and weight files

def test_registry_names_and_unknown_name():
    assert set(BACKBONES) == {"thumbnail", "clip", "s3d_howto100m", "x3d"}
    with pytest.raises(VidlangError, match=r"unknown backbone 'resnet'.*clip.*s3d_howto100m.*thumbnail.*x3d"):
        build_backbone("resnet")


def test_registry_rejects_bad_options_and_weights(tmp_path):
    with pytest.raises(VidlangError, match=r"unknown option\(s\) colour.*frames, grid"):
        build_backbone("thumbnail", colour=True)
    with pytest.raises(VidlangError, match="frames and grid must be >= 1"):
        build_backbone("thumbnail", frames=0)
    with pytest.raises(VidlangError, match="takes no weights"):
        build_backbone("thumbnail", weights=tmp_path / "w.pth")
    for name in ("clip", "s3d_howto100m", "x3d"):
        with pytest.raises(VidlangError, match="needs local weights"):
            build_backbone(name)
        missing = tmp_path / f"{name}_nope.pth"
        with pytest.raises(VidlangError, match=f"weights not found.*{missing.name}"):
            build_backbone(name, weights=missing)


def test_weight_files_are_never_unpickled(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(VidlangError, match="cannot read weights file .*garbage.pth"):
        load_state_dict_file(garbage)
    # a pickled arbitrary object (a function reference) is refused by weights_only loading
    evil = tmp_path / "evil.pth"
    torch.save({"x": hashlib.sha256}, evil)
    with pytest.raises(VidlangError, match="cannot read weights file .*evil.pth"):
        load_state_dict_file(evil)
    not_tensors = tmp_path / "numbers.pth"
    torch.save({"epoch": 3}, not_tensors)
    with pytest.raises(VidlangError, match="does not hold a state dict of tensors"):
        load_state_dict_file(not_tensors)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model_state": {"a": torch.ones(2)}, "epoch": 3}, wrapped)
    assert list(load_state_dict_file(wrapped)) == ["a"]


def test_weights_sha256_file_and_folder(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc" * 1000)
    assert weights_sha256(f) == hashlib.sha256(b"abc" * 1000).hexdigest()
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x")
    before = weights_sha256(folder)
    assert before == weights_sha256(folder)
    (folder / "model.safetensors").write_bytes(b"y")
    assert weights_sha256(folder) != before
    with pytest.raises(VidlangError, match="weights not found"):
        weights_sha256(tmp_path / "absent")


# ---------------------------------------------------------------- thumbnail

def test_thumbnail_contract_and_hand_computed_grey():
    b = build_backbone("thumbnail")
    assert (b.name, b.dim, b.frame_size, b.frames_per_feature(5.0), b.weights_sha256()) == \
        ("thumbnail", 326, None, 3, None)
    y = b(solid(2, 3, 20, 30, (51, 102, 153)))
    assert y.dtype == torch.float32 and y.shape == (2, 326)
    expected = torch.tensor([51, 102, 153]) / 255.0
    expected = ((expected - 0.45) / 0.25).repeat_interleave(G * G)
    assert_close(y[0, COLOUR], expected)
    assert_close(y[:, 3 * G * G:], torch.zeros(2, 326 - 3 * G * G))  # nothing moves, nothing changes
    with pytest.raises(ValueError, match="expected uint8 frames"):
        b(torch.zeros(1, 3, 8, 8, 3))


def test_thumbnail_deterministic_any_size_and_batch_consistent():
    b = build_backbone("thumbnail")
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (10, 3, 37, 53, 3), dtype=torch.uint8, generator=g)
    one = b(frames)
    assert_close(one, b(frames), rtol=0, atol=0)
    assert_close(torch.cat([b(frames[:4]), b(frames[4:])]), one)
    b.max_batch = 3  # internal chunking must not change anything either
    assert_close(b(frames), one)
    b.max_input_values = 2 * frames[0].numel()  # chunks of two windows, bounded by size
    assert_close(b(frames), one)
    for h, w in ((5, 7), (200, 120)):  # smaller than the grid, larger than the working resolution
        assert b(torch.randint(0, 256, (2, 3, h, w, 3), dtype=torch.uint8, generator=g)).isfinite().all()


def test_thumbnail_frame_order_properties():
    b = build_backbone("thumbnail", frames=4)
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (3, 4, 32, 32, 3), dtype=torch.uint8, generator=g)
    y = b(frames)
    shuffled = b(frames[:, [2, 0, 3, 1]])
    assert_close(shuffled[:, COLOUR], y[:, COLOUR])       # colour layout: mean frame, order-free
    assert not torch.allclose(shuffled[:, ENERGY], y[:, ENERGY])  # motion is about order
    rev = b(frames.flip(1))
    for part in (COLOUR, ENERGY, WHERE):
        assert_close(rev[:, part], y[:, part])
    assert_close(rev[:, MASS], y[:, MASS])
    for part in (CHANGE, SHIFT):
        assert_close(rev[:, part], -y[:, part])
    assert_close(rev[:, GLOBAL], -y[:, GLOBAL])


def test_thumbnail_sensitivity_colour_and_direction():
    b = build_backbone("thumbnail")
    red, blue = b(solid(1, 3, 16, 16, (255, 0, 0))), b(solid(1, 3, 16, 16, (0, 0, 255)))
    r, bl = slice(0, G * G), slice(2 * G * G, 3 * G * G)
    assert (red[0, r] > 1).all() and (red[0, bl] < -1).all()
    assert (blue[0, bl] > 1).all() and (blue[0, r] < -1).all()
    right, left = b(moving_square(+1)), b(moving_square(-1))
    assert right[0, SHIFT.start] > 0.5 and left[0, SHIFT.start] < -0.5   # x shift follows the motion
    assert abs(right[0, SHIFT.start + 1]) < 1e-4                        # no vertical motion
    assert_close(right[0, COLOUR], left[0, COLOUR])                     # same frames, reversed...
    assert right[0, MASS] > 0 and (right - left).abs().max() > 0.5      # ...but distinct features
    still = b(moving_square(+1)[:, [1, 1, 1]])
    assert_close(still[0, ENERGY.start:], torch.zeros(326 - ENERGY.start))


def test_thumbnail_single_frame_and_speed():
    b1 = build_backbone("thumbnail", frames=1)
    y = b1(torch.randint(0, 256, (4, 1, 24, 24, 3), dtype=torch.uint8))
    assert_close(y[:, ENERGY.start:], torch.zeros(4, 326 - ENERGY.start))
    b = build_backbone("thumbnail")
    frames = torch.randint(0, 256, (1000, 3, 64, 64, 3), dtype=torch.uint8)
    b(frames[:10])
    t0 = time.perf_counter()
    b(frames)
    rate = 1000 / (time.perf_counter() - t0)
    # thousands/s on an idle core; the bound is loose because the test machine's 2 cores are shared
    assert rate > 150, f"thumbnail too slow: {rate:.0f} windows/s"


# ---------------------------------------------------------------- clip

@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    out = tmp_path_factory.mktemp("tiny_clip")
    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModelWithProjection(cfg).save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def test_clip_parity_with_transformers(tiny_clip_dir):
    from transformers import CLIPVisionModelWithProjection

    b = build_backbone("clip", weights=tiny_clip_dir)
    assert (b.dim, b.frame_size, b.frames_per_feature(1.0)) == (16, None, 1)
    assert b.weights_sha256() == weights_sha256(tiny_clip_dir)
    g = torch.Generator().manual_seed(2)
    frames = torch.randint(0, 256, (3, 1, 40, 56, 3), dtype=torch.uint8, generator=g)
    y = b(frames)
    assert y.shape == (3, 16)
    assert_close(y.norm(dim=1), torch.ones(3))
    ref = CLIPVisionModelWithProjection.from_pretrained(tiny_clip_dir, local_files_only=True).eval()
    with torch.no_grad():
        pixels = b.preprocess(frames)
        assert pixels.shape == (3, 3, 32, 32)
        expected = torch.nn.functional.normalize(ref(pixel_values=pixels).image_embeds, dim=-1)
    assert_close(y, expected)
    # with f frames per window the middle one is used
    stacked = torch.stack([frames[:, 0] // 2, frames[:, 0], frames[:, 0] // 3], dim=1)
    assert_close(b(stacked), y)


def test_clip_preprocessing_matches_image_processor(tiny_clip_dir):
    from transformers import CLIPImageProcessor

    b = build_backbone("clip", weights=tiny_clip_dir)
    proc = CLIPImageProcessor.from_pretrained(tiny_clip_dir)
    g = torch.Generator().manual_seed(3)
    # landscape, portrait, odd crop offsets, upscaling, already at size
    for h, w in ((48, 80), (80, 48), (37, 101), (20, 33), (32, 32)):
        img = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g)
        ours = b.preprocess(img[None, None])
        theirs = proc(images=[img.permute(2, 0, 1)], return_tensors="pt")["pixel_values"]
        assert_close(ours, theirs.float(), msg=f"preprocessing differs for a {h}x{w} frame")


def test_clip_without_projection_is_a_clear_error(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16)
    CLIPVisionModel(cfg).save_pretrained(tmp_path)
    with pytest.raises(VidlangError, match="visual_projection.*projection=False"):
        build_backbone("clip", weights=tmp_path)
    b = build_backbone("clip", weights=tmp_path, projection=False)
    assert b.dim == 32
    assert b(torch.zeros(2, 1, 32, 32, 3, dtype=torch.uint8)).shape == (2, 32)
    with pytest.raises(VidlangError, match="cannot load CLIP vision model from"):
        build_backbone("clip", weights=tmp_path / "..")


# ---------------------------------------------------------------- s3d

@pytest.fixture(scope="module")
def s3d_state():
    from preprocessing.backbones.s3d import S3DG

    torch.manual_seed(0)
    net = S3DG()
    # Default init shrinks the signal ~3x per layer (and each gate halves it), so a random S3D maps every input to
    # the fc bias. He init and BN gains of ~2 keep inputs distinguishable; non-trivial BN statistics make a
    # wrongly loaded buffer show.
    for m in net.modules():
        if isinstance(m, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, torch.nn.BatchNorm3d):
            m.weight.data.uniform_(1.5, 2.5)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.state_dict()


def test_s3d_loads_release_layout_and_embeds(tmp_path, s3d_state):
    assert {"conv1.conv1.weight", "conv_2c.conv2.weight", "gating.fc.weight", "mixed_5c.conv_b1_b.bn2.running_var",
            "mixed_3b.gating_b3.fc.bias", "fc.weight"} <= set(s3d_state)
    assert s3d_state["conv1.conv1.weight"].shape == (64, 24, 2, 4, 4) and s3d_state["fc.weight"].shape == (512, 1024)
    # the release also holds the text branch, and DataParallel-saved copies carry "module."
    release = {f"module.{k}": v for k, v in s3d_state.items()}
    release["module.text_module.word_embd.weight"] = torch.zeros(4, 3)
    path = tmp_path / "s3d_howto100m.pth"
    torch.save(release, path)
    b = build_backbone("s3d_howto100m", weights=path, size=32)
    assert (b.dim, b.frame_size, b.frames_per_feature(1.0), b.frames_per_feature(2.0)) == (512, (32, 32), 30, 16)
    assert build_backbone("s3d_howto100m", weights=path).frame_size == (224, 224)
    g = torch.Generator().manual_seed(4)
    frames = torch.randint(0, 256, (2, 3, 32, 32, 3), dtype=torch.uint8, generator=g)
    padded = torch.cat([frames, frames[:, -1:]], dim=1)  # 4 frames: the last one repeated
    y = b(padded)
    assert y.shape == (2, 512) and y.dtype == torch.float32
    assert_close(y.norm(dim=1), torch.ones(2))
    assert (y[0] - y[1]).abs().max() > 1e-3  # different clips, different embeddings
    # one call checks two things (S3D is slow on a shared CPU): batch members are independent (eval-mode BN),
    # and an odd frame count repeats the last frame (space-to-depth needs an even count)
    assert_close(b(frames[1:]), y[1:], rtol=1e-4, atol=1e-5)


def test_s3d_space_to_depth_matches_release_channel_order():
    """conv1's 24 input channels must be ordered as in the release: (dt, dh, dw, rgb); reference = its
    view/permute formulation, written out independently here."""
    from preprocessing.backbones.s3d import space_to_depth

    x = torch.arange(2 * 3 * 4 * 6 * 8, dtype=torch.float32).view(2, 3, 4, 6, 8)
    ours = space_to_depth(x)
    b, c, t, h, w = x.shape
    ref = x.view(b, c, t // 2, 2, h // 2, 2, w // 2, 2).permute(0, 3, 5, 7, 1, 2, 4, 6)
    assert_close(ours, ref.reshape(b, 8 * c, t // 2, h // 2, w // 2))


def test_s3d_strict_loading_errors(tmp_path, s3d_state):
    bad = dict(s3d_state)
    del bad["mixed_4d.conv_b2_b.conv2.weight"]
    bad["mixed_9z.conv_b0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(VidlangError, match=r"bad\.pth.*missing keys: mixed_4d\.conv_b2_b\.conv2\.weight.*"
                                           r"unexpected keys: mixed_9z\.conv_b0\.conv1\.weight"):
        build_backbone("s3d_howto100m", weights=path, size=32)
    wrong = dict(s3d_state)
    wrong["fc.weight"] = torch.zeros(256, 1024)
    torch.save(wrong, path)
    with pytest.raises(VidlangError, match=r"shape mismatches: fc\.weight \(256, 1024\) vs expected \(512, 1024\)"):
        build_backbone("s3d_howto100m", weights=path, size=32)
    # BatchNorm counters absent (files saved by old torch versions) are tolerated
    old = {k: v for k, v in s3d_state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, path)
    assert build_backbone("s3d_howto100m", weights=path, size=32).dim == 512


# ---------------------------------------------------------------- x3d (pytorchvideo)

def test_compat_alias_makes_pytorchvideo_importable():
    import sys

    from preprocessing.compat import import_pytorchvideo, install_torchvision_alias

    install_torchvision_alias()
    install_torchvision_alias()  # idempotent
    import torchvision.transforms._functional_tensor as new

    assert sys.modules["torchvision.transforms.functional_tensor"] is new
    assert hasattr(import_pytorchvideo("transforms"), "ShortSideScale")


def test_x3d_loads_checkpoint_and_matches_head_features(tmp_path):
    from preprocessing.compat import import_pytorchvideo

    x3d = import_pytorchvideo("models.x3d")
    torch.manual_seed(0)
    net = x3d.create_x3d(input_clip_length=4, input_crop_size=64, depth_factor=2.2, model_num_class=7).eval()
    hub = tmp_path / "X3D_XS.pyth"
    torch.save({"model_state": net.state_dict(), "epoch": 1}, hub)
    plain = tmp_path / "plain.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, plain)

    b = build_backbone("x3d", weights=hub, size=64)
    assert (b.dim, b.frame_size, b.frames_per_feature(1.0)) == (2048, (64, 64), 4)
    assert build_backbone("x3d", weights=plain, size=64).dim == 2048
    g = torch.Generator().manual_seed(5)
    frames = torch.randint(0, 256, (2, 4, 64, 64, 3), dtype=torch.uint8, generator=g)
    y = b(frames)
    assert y.shape == (2, 2048)
    assert_close(y.norm(dim=1), torch.ones(2))

    # parity: the input of pytorchvideo's own classifier on the same normalised clip
    captured = {}
    net.blocks[-1].proj.register_forward_hook(lambda m, inp, out: captured.setdefault("x", inp[0]))
    clip = (frames.permute(0, 4, 1, 2, 3).float() / 255.0 - 0.45) / 0.225
    with torch.no_grad():
        net(clip)
    expected = torch.nn.functional.normalize(captured["x"].reshape(2, -1), dim=-1)
    assert_close(y, expected, rtol=1e-4, atol=1e-5)

    broken = dict(net.state_dict())
    broken.pop("blocks.1.res_blocks.0.branch2.conv_a.weight")
    torch.save(broken, plain)
    with pytest.raises(VidlangError, match=r"missing keys: blocks\.1\.res_blocks\.0\.branch2\.conv_a\.weight"):
        build_backbone("x3d", weights=plain, size=64)
    torch.save({"fc.weight": torch.zeros(2, 2)}, plain)
    with pytest.raises(VidlangError, match="does not look like an X3D checkpoint"):
        build_backbone("x3d", weights=plain)
    with pytest.raises(VidlangError, match="unknown variant 'xl'"):
        build_backbone("x3d", weights=hub, variant="xl")


@pytest.mark.parametrize("shape, size", [((6, 360, 640, 3), (32, 32)), ((3, 1080, 1920, 3), (32, 32)),
                                         ((4, 50, 33, 3), (32, 32)), ((2, 100, 7, 3), (32, 7))])
def test_thumbnail_integer_area_average_is_the_exact_mean(shape, size):
    """The integer path (int8 sums by torch._int_mm) equals the float64 cell mean rounded once to float32, and
    PyTorch's float32 adaptive_avg_pool2d to within float32 rounding."""
    import torch.nn.functional as F

    from preprocessing.backbones.thumbnail import area_average

    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(len(shape) + shape[1]))
    got = area_average(x, size)
    exact = F.adaptive_avg_pool2d(x.double().permute(0, 3, 1, 2), size).float()
    assert_close(got, exact, rtol=0, atol=0)
    assert_close(got, F.adaptive_avg_pool2d(x.float().permute(0, 3, 1, 2), size), rtol=2.4e-7, atol=0)
