"""ADA-Net translator: network shapes, the attention block's identity start, and the NCE / LSGAN losses.

Everything runs on one CPU core with narrow networks (width 8) and 64 px images.
"""
from __future__ import annotations

import math

import pytest
import torch

from deadtree.nets.adanet import (
    NCE_DEPTH_NAMES,
    ResidualDiscriminator,
    ResnetAttentionGenerator,
    SelfAttention2d,
)
from deadtree.training.nce import (
    FreqNCE,
    PatchSampleMLP,
    generator_objective,
    lsgan_adversarial_loss,
    lsgan_discriminator_loss,
    lsgan_losses,
    patch_nce,
    patch_nce_loss,
    translator_step,
)

SIDE = 64
WIDTH = 8


@pytest.fixture(autouse=True)
def _small_and_seeded():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def images(batch: int = 2, side: int = SIDE) -> torch.Tensor:
    return torch.rand(batch, 4, side, side) * 2 - 1


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- generator --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("attention", [True, False])
def test_generator_keeps_shape_and_range(attention):
    generator = ResnetAttentionGenerator(width=WIDTH, attention=attention)
    x = images() * 50  # far outside [-1, 1]: tanh must still bound the output
    out = generator(x)
    assert out.shape == x.shape
    assert out.abs().max() <= 1


def test_generator_band_counts_are_configurable():
    out = ResnetAttentionGenerator(in_bands=3, out_bands=4, width=WIDTH)(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 4, 32, 32)


@pytest.mark.parametrize("attention", [True, False])
def test_generator_features_at_the_five_nce_depths(attention):
    generator = ResnetAttentionGenerator(width=WIDTH, attention=attention)
    x = images()
    features = generator.encode_features(x)
    w, q = WIDTH, SIDE // 4
    expected = [(2, 4, SIDE + 6, SIDE + 6), (2, 2 * w, SIDE // 2, SIDE // 2)] + [(2, 4 * w, q, q)] * 3
    assert len(NCE_DEPTH_NAMES) == 5
    assert [tuple(f.shape) for f in features] == expected
    assert [f.shape[1] for f in features] == list(generator.feature_channels)
    out, same = generator(x, return_features=True)
    assert all(torch.allclose(a, b) for a, b in zip(features, same))
    assert [tuple(f.shape) for f in generator.encode_features(x, depths=[0, 4])] == [expected[0], expected[4]]


def test_generator_rejects_sides_that_do_not_survive_two_downsamplings():
    with pytest.raises(ValueError):
        ResnetAttentionGenerator(width=WIDTH)(torch.rand(1, 4, 30, 32))


def test_default_generator_is_the_papers_7m_parameter_network():
    generator = ResnetAttentionGenerator()
    assert 6.5e6 < count(generator) < 7.5e6
    # the ablation drops exactly the two attention blocks' convs (3x3: 256->32 twice, 256->256) and gammas
    per_attention = 2 * 256 * 32 * 9 + 256 * 256 * 9 + 1
    assert count(generator) - count(ResnetAttentionGenerator(attention=False)) == 2 * per_attention


def test_width_scales_every_generator_channel():
    narrow, wide = ResnetAttentionGenerator(width=16), ResnetAttentionGenerator(width=32)
    assert count(narrow) < count(wide) / 3  # conv parameters grow ~quadratically with width


# --- self-attention ---------------------------------------------------------------------------------------------

def test_fresh_attention_block_is_exactly_the_identity():
    block = SelfAttention2d(32)
    assert block.gamma.item() == 0
    x = torch.randn(2, 32, 8, 8)
    assert torch.equal(block(x), x)


def test_attention_block_mixes_positions_once_gamma_is_nonzero():
    block = SelfAttention2d(32)
    assert block.query[1].out_channels == 4 and block.value[1].out_channels == 32
    with torch.no_grad():
        block.gamma.fill_(0.5)
    x = torch.randn(2, 32, 8, 8)
    y = block(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    # global reach: changing one far corner changes the output at the opposite corner
    x2 = x.clone()
    x2[:, :, 0, 0] += 5
    assert not torch.allclose(block(x2)[:, :, -1, -1], y[:, :, -1, -1])


def test_attention_matches_the_explicit_softmax_formula():
    block = SelfAttention2d(16, key_channels=4)
    with torch.no_grad():
        block.gamma.fill_(0.7)
    x = torch.randn(1, 16, 4, 5)
    q, k, v = (m(x).flatten(2) for m in (block.query, block.key, block.value))  # (1, C, N)
    attention = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (1, N, N), rows sum to 1
    expected = 0.7 * (v @ attention.transpose(1, 2)).view_as(x) + x
    assert torch.allclose(block(x), expected, atol=1e-5)


# --- discriminator ----------------------------------------------------------------------------------------------

def test_default_discriminator_scores_256px_images():
    discriminator = ResidualDiscriminator()
    assert len(discriminator.blocks) == 6  # 256 -> 4 px
    assert discriminator.from_bands.weight.shape[0] == 64
    with torch.no_grad():
        assert discriminator(torch.rand(2, 4, 256, 256)).shape == (2, 1)


def test_discriminator_for_smaller_images():
    discriminator = ResidualDiscriminator(image_size=SIDE, base_channels=8)
    assert len(discriminator.blocks) == 4  # 64 -> 4 px
    assert discriminator(images(3)).shape == (3, 1)
    with pytest.raises(ValueError):
        discriminator(images(1, side=32))


def test_tiled_discriminator_scores_random_crops():
    averaged = ResidualDiscriminator(image_size=SIDE, tiled_crop=16, num_crops=5, base_channels=8)
    assert len(averaged.blocks) == 2  # built for the 16 px crop
    x = images(3)
    assert averaged(x).shape == (3, 1)
    per_crop = ResidualDiscriminator(image_size=SIDE, tiled_crop=16, reduce_crops=False, base_channels=8)
    assert per_crop.num_crops == 16  # covers the image area once on average
    assert per_crop(x).shape == (3, 16)
    assert averaged.random_crops(x).shape == (15, 4, 16, 16)


# --- losses -----------------------------------------------------------------------------------------------------

@pytest.fixture
def nce_parts():
    generator = ResnetAttentionGenerator(width=WIDTH)
    heads = PatchSampleMLP(generator.feature_channels, hidden=64, out=64)
    return generator, heads


def test_patch_sampler_reuses_the_ids_it_returns(nce_parts):
    generator, heads = nce_parts
    features = generator.encode_features(images())
    first, ids = heads(features, num_patches=32)
    assert [len(i) for i in ids] == [32] * 5
    assert all(len(torch.unique(i)) == 32 for i in ids)  # distinct positions
    again, same_ids = heads(features, patch_ids=ids)
    assert all(torch.equal(a, b) for a, b in zip(ids, same_ids))
    assert all(torch.allclose(a, b) for a, b in zip(first, again))
    assert all(p.shape == (2, 32, 64) for p in first)
    assert all(torch.allclose(p.norm(dim=-1), torch.ones(2, 32)) for p in first)
    # more patches than positions: every position once
    small = [torch.randn(1, c, 2, 3) for c in generator.feature_channels]
    assert [len(i) for i in heads(small, num_patches=256)[1]] == [6] * 5


def test_patch_nce_loss_prefers_matching_positions():
    keys = torch.nn.functional.normalize(torch.randn(2, 16, 8), dim=-1)
    matched = patch_nce_loss(keys.clone(), keys)
    shuffled = patch_nce_loss(keys[:, torch.randperm(16)], keys)
    assert torch.isfinite(matched) and matched < shuffled
    # keys are detached: only the queries get gradients
    queries, keys = keys.clone().requires_grad_(), keys.clone().requires_grad_()
    patch_nce_loss(queries, keys).backward()
    assert queries.grad is not None and keys.grad is None


def test_patch_nce_is_lower_for_matching_content(nce_parts):
    generator, heads = nce_parts
    a = images()
    with torch.no_grad():
        same = patch_nce(generator, heads, a, a.clone(), num_patches=64)
        noisy = patch_nce(generator, heads, a, a + 0.05 * torch.randn_like(a), num_patches=64)
        unrelated = patch_nce(generator, heads, a, images(), num_patches=64)
        shifted = patch_nce(generator, heads, a, torch.roll(a, shifts=(8, 8), dims=(-2, -1)), num_patches=64)
    assert all(torch.isfinite(t) for t in (same, noisy, unrelated, shifted))
    assert same < unrelated and noisy < unrelated
    assert same < shifted  # positives are the same positions, not just similar content
    assert unrelated > 0.8 * math.log(64)  # chance level for 64 candidates


def test_freq_nce_is_lower_for_matching_content():
    freq = FreqNCE(in_bands=4, crop_size=16, num_crops=16, hidden=64, out=32)
    a = images()
    corners = freq.sample_corners(SIDE, SIDE)
    assert corners.shape == (16, 2) and corners.max() <= SIDE - 16
    with torch.no_grad():
        same = freq(a, a.clone(), corners)
        noisy = freq(a, a + 0.05 * torch.randn_like(a), corners)
        unrelated = freq(a, images(), corners)
        shifted = freq(a, torch.roll(a, shifts=(8, 8), dims=(-2, -1)), corners)
    assert all(torch.isfinite(t) for t in (same, noisy, unrelated, shifted))
    assert same < unrelated and noisy < unrelated and same < shifted


def test_freq_nce_crops_are_taken_at_the_given_corners():
    freq = FreqNCE(in_bands=1, crop_size=4, num_crops=2, hidden=8, out=4)
    grid = torch.arange(64.0).view(1, 1, 8, 8)
    corners = torch.tensor([[0, 0], [3, 2]])
    spectra = []
    freq.projection = torch.nn.Identity()  # expose the raw spectra (then L2-normalised)
    embedded = freq.embed(grid, corners)
    for row, col in corners.tolist():
        crop = grid[0, 0, row:row + 4, col:col + 4]
        spectrum = torch.view_as_real(torch.fft.fft2(crop, norm="ortho")).flatten()
        spectra.append(torch.nn.functional.normalize(spectrum, dim=0))
    assert torch.allclose(embedded[0], torch.stack(spectra), atol=1e-6)


def test_lsgan_losses_follow_the_least_squares_targets():
    fake, real = torch.tensor([[0.0], [0.0]]), torch.tensor([[1.0], [1.0]])
    assert lsgan_discriminator_loss(fake, real) == 0  # D perfect
    assert lsgan_adversarial_loss(fake) == 1  # G fully caught
    loss_d, loss_adv = lsgan_losses(torch.full((2, 1), 0.5), torch.full((2, 1), 0.5))
    assert math.isclose(loss_d.item(), 0.25) and math.isclose(loss_adv.item(), 0.25)


@pytest.mark.parametrize("variant", ["ada-net", "plain-cut"])
def test_full_objective_trains_for_a_few_steps(variant):
    ada = variant == "ada-net"
    generator = ResnetAttentionGenerator(width=WIDTH, attention=ada)
    discriminator = ResidualDiscriminator(image_size=SIDE, tiled_crop=32 if ada else None, base_channels=8)
    heads = PatchSampleMLP(generator.feature_channels, hidden=32, out=32)
    freq = FreqNCE(crop_size=16, num_crops=8, hidden=32, out=32) if ada else None
    g_params = [*generator.parameters(), *heads.parameters(), *(freq.parameters() if freq else [])]
    optimizer_g = torch.optim.Adam(g_params, lr=2e-4, betas=(0.5, 0.999))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x, y = images(), images()

    before = [p.detach().clone() for p in generator.parameters()]
    for _ in range(2):
        losses = translator_step(generator, discriminator, heads, optimizer_g, optimizer_d, x, y,
                                 freq_nce=freq, num_patches=32)
        assert all(math.isfinite(v) for v in losses.values()), losses
    assert any(not torch.equal(a, b) for a, b in zip(before, generator.parameters()))
    assert all(p.requires_grad for p in discriminator.parameters())  # D unfrozen again after the G step

    objective = generator_objective(generator, discriminator, heads, x, y, freq_nce=freq, num_patches=32)
    assert math.isclose(objective.total.item(),
                        (objective.adversarial + 0.5 * (objective.nce_translation + objective.nce_identity)).item(),
                        rel_tol=1e-6)
