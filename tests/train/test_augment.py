"""DiffAugment: policy parsing, ranges, gradients, determinism and the random stream."""

from __future__ import annotations

import pytest
import torch

from rxwgan.base.errors import RxwganError
from rxwgan.train.augment import DEFAULT_POLICY, OPERATIONS, augment, parse_policy


def _rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 6, side: int = 16, channels: int = 1) -> torch.Tensor:
    return torch.rand(n, channels, side, side, generator=_rng(99)) * 2 - 1


def test_parse_policy_orders_dedupes_and_turns_off():
    assert parse_policy("cutout, Translation,brightness,contrast") == DEFAULT_POLICY
    assert parse_policy("translation,translation") == ("translation",)
    assert parse_policy("color,flip") == ("brightness", "contrast", "flip")
    for off in ("none", "", " ", None, "off"):
        assert parse_policy(off) == ()


def test_unknown_augmentation_names_the_flag_and_the_allowed_names():
    with pytest.raises(RxwganError) as err:
        parse_policy("translation,rotate")
    message = str(err.value)
    assert "--augment" in message and "'rotate'" in message
    assert all(op in message for op in OPERATIONS) and "none" in message
    with pytest.raises(RxwganError, match="none"):
        parse_policy("none,cutout")


def test_empty_policy_returns_the_input_and_draws_nothing():
    images, rng = _images(), _rng()
    state = rng.get_state()
    assert augment(images, (), rng) is images
    assert augment(images, "none", rng) is images
    assert torch.equal(rng.get_state(), state)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shape_dtype_and_memory_format_are_kept(dtype):
    for channels in (1, 3):
        plain = _images(channels=channels).to(dtype)
        last = plain.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # channels-last strides
        for images in (plain, last):
            out = augment(images, OPERATIONS, _rng())
            assert out.shape == images.shape and out.dtype == dtype
            assert out.stride() == images.stride()


def test_ranges_of_brightness_and_contrast():
    flat = torch.zeros(64, 1, 8, 8)  # brightness of a flat image: its offset, within +-0.5
    offsets = augment(flat, "brightness", _rng())[:, 0, 0, 0]
    assert offsets.abs().max() <= 0.5 and offsets.min() < -0.3 and offsets.max() > 0.3
    again = augment(flat, "brightness", _rng())
    assert torch.equal(again, offsets[:, None, None, None].expand_as(flat))  # one offset per image
    images = _images(n=64)
    out = augment(images, "contrast", _rng())
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    centred = images - mean
    dims = (1, 2, 3)
    factor = (out - mean).mul(centred).sum(dims, keepdim=True) / centred.square().sum(dims, keepdim=True)
    assert torch.allclose(out, centred * factor + mean, atol=1e-5)  # one factor per image
    assert factor.min() >= 0.5 - 1e-4 and factor.max() <= 1.5 + 1e-4 and factor.std() > 0.2
    assert torch.allclose(out.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=1e-5)


def test_translation_moves_content_by_at_most_an_eighth_with_zero_fill():
    side, n = 16, 32
    images = torch.full((n, 1, side, side), -1.0)
    images[:, :, 8, 5] = 1.0  # one bright pixel per image
    out = augment(images, "translation", _rng())
    moved = 0
    for k in range(n):
        (y, x) = (out[k, 0] == 1.0).nonzero()[0].tolist()
        assert abs(y - 8) <= 2 and abs(x - 5) <= 2  # 16 / 8 = 2 pixels at most
        moved += (y, x) != (8, 5)
        shift_y, shift_x = y - 8, x - 5
        expected = torch.zeros(side, side)  # the shifted image, 0 where uncovered
        src = images[k, 0]
        expected[max(shift_y, 0):side + min(shift_y, 0), max(shift_x, 0):side + min(shift_x, 0)] = \
            src[max(-shift_y, 0):side + min(-shift_y, 0), max(-shift_x, 0):side + min(-shift_x, 0)]
        assert torch.equal(out[k, 0], expected)
    assert moved > n // 2


def test_cutout_zeroes_a_square_of_half_the_side_at_most():
    side = 16
    images = torch.ones(32, 1, side, side)
    out = augment(images, "cutout", _rng())
    zeros = (out == 0).flatten(1).sum(1)
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert zeros.min() >= 4 * 4 and zeros.max() <= 8 * 8  # a corner of it at least, never more
    assert (zeros == 64).any()


def test_flip_mirrors_some_images_left_right_only():
    images = _images(n=16)
    out = augment(images, "flip", _rng())
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)


def test_same_seed_same_result_and_no_global_random_draws():
    images = _images()
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    first = augment(images, OPERATIONS, _rng(7))
    again = augment(images, OPERATIONS, _rng(7))
    other = augment(images, OPERATIONS, _rng(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(torch.get_rng_state(), global_state)


def test_gradients_flow_including_the_double_backward_of_a_penalty():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Tanh(),
                                 torch.nn.Flatten(), torch.nn.Linear(4 * 16 * 16, 1))
    x_hat = _images().requires_grad_(True)
    scores = critic(augment(x_hat, OPERATIONS, _rng()))
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    assert grad.abs().sum() > 0
    gp = (grad.flatten(1).norm(dim=1) - 1).square().mean()
    gp.backward()
    weights = (critic[0].weight, critic[3].weight)  # the penalty reaches them through d/dx
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights)
    fake = _images().requires_grad_(True)  # the generator step: gradient reaches the fakes
    critic(augment(fake, DEFAULT_POLICY, _rng())).mean().backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_generator_on_another_device_type_is_refused():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    with pytest.raises(ValueError, match="generator"):
        augment(_images(), DEFAULT_POLICY, torch.Generator(device="cuda"))
