"""ADA-Net translator losses: PatchNCE, FreqNCE, least-squares GAN, the full generator objective and one step.

Written for this project from docs/ADANET.md. Notation: G translates source x into the target look, y are real
target images. NCE(a, b) asks each part of b to be recognisable as the same-place part of a among the other
sampled parts of a, which is what keeps content (tree crowns) in place while the style changes:

    L_D = 0.5 * [MSE(D(G(x)), 0) + MSE(D(y), 1)]
    L_G = MSE(D(G(x)), 1) + 0.5 * [NCE(x, G(x)) + NCE(y, G(y))],   NCE = PatchNCE + FreqNCE (optional)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deadtree.training.losses import soft_dice_loss

DEFAULT_TAU = 0.07


class FeatureEncoder(Protocol):
    def encode_features(self, x: torch.Tensor) -> list[torch.Tensor]: ...


def info_nce(queries: torch.Tensor, keys: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """InfoNCE over (B, N, D) L2-normalised embeddings: query i of an image must pick key i among that image's N
    keys. Negatives stay within one image (other images in the batch may show the same kind of scene, so they
    are not safe negatives). Keys are detached: they are the fixed anchor the queries are pulled towards."""
    if queries.dim() == 2:
        queries, keys = queries.unsqueeze(0), keys.unsqueeze(0)
    if queries.shape != keys.shape:
        raise ValueError(f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} differ")
    batch, n, _ = queries.shape
    logits = torch.bmm(queries, keys.detach().transpose(1, 2)).float() / tau  # (B, N, N); diagonal = positives
    target = torch.arange(n, device=queries.device).repeat(batch)
    return F.cross_entropy(logits.flatten(0, 1), target)


def patch_nce_loss(feat_q: torch.Tensor, feat_k: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """PatchNCE at one depth: feat_q from the translated image b, feat_k from the input a, both (B, P, D) (or
    (P, D)) projected, normalised and sampled at the same positions."""
    return info_nce(feat_q, feat_k, tau)


class PatchSampleMLP(nn.Module):
    """One 2-layer projection head (d -> hidden -> out) per NCE depth, plus the position sampling.

    Heads are built from known channel counts (ResnetAttentionGenerator.feature_channels) rather than lazily, so
    their parameters exist when the optimiser is created.
    """

    def __init__(self, in_channels: Sequence[int], hidden: int = 256, out: int = 256):
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(c, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out)) for c in in_channels
        )

    def forward(
        self,
        features: Sequence[torch.Tensor],
        num_patches: int = 256,
        patch_ids: Sequence[torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Project features (one (B, C, H, W) map per depth) at sampled positions.

        Without patch_ids, min(num_patches, H*W) distinct positions are drawn per depth (shared by the images of
        the batch); pass the returned ids back in to sample the other image at exactly the same positions.
        Returns ([(B, P, out) L2-normalised per depth], [position ids per depth]).
        """
        if len(features) != len(self.heads):
            raise ValueError(f"{len(features)} feature maps for {len(self.heads)} heads")
        if patch_ids is not None and len(patch_ids) != len(features):
            raise ValueError(f"{len(patch_ids)} id sets for {len(features)} feature maps")
        projected, used_ids = [], []
        for depth, (feat, head) in enumerate(zip(features, self.heads)):
            positions = feat.flatten(2).transpose(1, 2)  # (B, H*W, C)
            if patch_ids is None:
                ids = torch.randperm(positions.shape[1], device=feat.device)[:num_patches]
            else:
                ids = patch_ids[depth]
            projected.append(F.normalize(head(positions[:, ids, :]), dim=-1))
            used_ids.append(ids)
        return projected, used_ids


def patch_nce(
    generator: FeatureEncoder,
    heads: PatchSampleMLP,
    a: torch.Tensor,
    b: torch.Tensor,
    num_patches: int = 256,
    tau: float = DEFAULT_TAU,
) -> torch.Tensor:
    """PatchNCE(a, b) averaged over the generator's NCE depths; gradients reach G and the heads through b only.

    The keys (features of a) are computed without a graph: they are detached anyway, and skipping their graph
    saves a full encoder's worth of activation memory.
    """
    with torch.no_grad():
        keys, ids = heads(generator.encode_features(a), num_patches)
    queries, _ = heads(generator.encode_features(b), patch_ids=ids)
    return torch.stack([patch_nce_loss(q, k, tau) for q, k in zip(queries, keys)]).mean()


class FreqNCE(nn.Module):
    """The paper's frequency-domain NCE on raw images: crops at the same places in a and b are compared through
    their orthonormal 2D spectra, so the translation is also asked to keep texture and periodic structure.

    Each crop's spectrum (real and imaginary parts of every band) is flattened and projected with
    BatchNorm1d -> Linear(-> hidden) -> ReLU -> Linear(-> out), L2-normalised, then scored with InfoNCE among
    the crops of the same image. The crop corners are shared by a, b and every image of the batch.
    """

    def __init__(self, in_bands: int = 4, crop_size: int = 32, num_crops: int = 64, hidden: int = 1024,
                 out: int = 256, tau: float = DEFAULT_TAU):
        super().__init__()
        self.crop_size, self.num_crops, self.tau = crop_size, num_crops, tau
        spectrum_size = in_bands * crop_size * crop_size * 2
        self.projection = nn.Sequential(
            nn.BatchNorm1d(spectrum_size),  # spectra span orders of magnitude (DC vs high frequencies)
            nn.Linear(spectrum_size, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out),
        )

    def sample_corners(self, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
        """(num_crops, 2) top-left (row, col) corners."""
        s = self.crop_size
        if height < s or width < s:
            raise ValueError(f"image {height}x{width} is smaller than the {s} px FreqNCE crop")
        rows = torch.randint(0, height - s + 1, (self.num_crops,), device=device)
        cols = torch.randint(0, width - s + 1, (self.num_crops,), device=device)
        return torch.stack([rows, cols], dim=1)

    def embed(self, images: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, num_crops, out) normalised spectrum embeddings."""
        batch = images.shape[0]
        offsets = torch.arange(self.crop_size, device=images.device)
        rows = (corners[:, 0, None] + offsets)[:, :, None]  # (N, s, 1)
        cols = (corners[:, 1, None] + offsets)[:, None, :]  # (N, 1, s)
        crops = images[:, :, rows, cols].transpose(1, 2)  # (B, N, C, s, s)
        # float32: half-precision FFTs are restricted and lose the small high-frequency terms.
        spectra = torch.view_as_real(torch.fft.fft2(crops.float(), norm="ortho"))
        embedded = self.projection(spectra.flatten(2).flatten(0, 1))
        return F.normalize(embedded, dim=-1).view(batch, corners.shape[0], -1)

    def forward(self, a: torch.Tensor, b: torch.Tensor, corners: torch.Tensor | None = None) -> torch.Tensor:
        if a.shape != b.shape:
            raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} differ")
        if corners is None:
            corners = self.sample_corners(a.shape[-2], a.shape[-1], a.device)
        with torch.no_grad():  # keys are detached; see patch_nce
            keys = self.embed(a, corners)
        return info_nce(self.embed(b, corners), keys, self.tau)


def nce_loss(
    generator: FeatureEncoder,
    heads: PatchSampleMLP,
    a: torch.Tensor,
    b: torch.Tensor,
    freq_nce: FreqNCE | None = None,
    num_patches: int = 256,
    tau: float = DEFAULT_TAU,
) -> torch.Tensor:
    """NCE(a, b) = PatchNCE(a, b) + FreqNCE(a, b); freq_nce=None gives plain CUT's PatchNCE alone."""
    loss = patch_nce(generator, heads, a, b, num_patches, tau)
    if freq_nce is not None:
        loss = loss + freq_nce(a, b)
    return loss


# --- least-squares GAN --------------------------------------------------------------------------------------------

def lsgan_discriminator_loss(score_fake: torch.Tensor, score_real: torch.Tensor) -> torch.Tensor:
    """L_D = 0.5 * [MSE(D(G(x)), 0) + MSE(D(y), 1)]; score D on a detached G(x) so only D learns from it."""
    return 0.5 * (F.mse_loss(score_fake, torch.zeros_like(score_fake))
                  + F.mse_loss(score_real, torch.ones_like(score_real)))


def lsgan_adversarial_loss(score_fake: torch.Tensor) -> torch.Tensor:
    """L_adv = MSE(D(G(x)), 1): the generator's side of the least-squares game."""
    return F.mse_loss(score_fake, torch.ones_like(score_fake))


def lsgan_losses(score_fake: torch.Tensor, score_real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_D, L_adv) from the same scores, for monitoring. Training should use the two functions above in turn
    (D step on detached fakes, then the G step against the updated D), as translator_step does."""
    return lsgan_discriminator_loss(score_fake, score_real), lsgan_adversarial_loss(score_fake)


# --- the full objective -------------------------------------------------------------------------------------------

@dataclass
class GeneratorLoss:
    total: torch.Tensor
    adversarial: torch.Tensor
    nce_translation: torch.Tensor  # NCE(x, G(x)): content kept through the translation
    nce_identity: torch.Tensor  # NCE(y, G(y)): target images should pass through unchanged
    task: torch.Tensor | None = None  # the frozen segmenter's answer on G(x) against its answer on x


def translate_both(
    generator: nn.Module, real_x: torch.Tensor, real_y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(G(x), G(y)) in one pass when the shapes allow it; instance norm makes the joint pass equivalent."""
    if real_x.shape[1:] == real_y.shape[1:]:
        fake_x, identity_y = generator(torch.cat([real_x, real_y])).split([len(real_x), len(real_y)])
        return fake_x, identity_y
    return generator(real_x), generator(real_y)


def generator_objective(
    generator: nn.Module,
    discriminator: nn.Module,
    heads: PatchSampleMLP,
    real_x: torch.Tensor,
    real_y: torch.Tensor,
    fake_x: torch.Tensor | None = None,
    identity_y: torch.Tensor | None = None,
    freq_nce: FreqNCE | None = None,
    num_patches: int = 256,
    tau: float = DEFAULT_TAU,
    nce_weight: float = 0.5,
    task: "TaskConsistency | None" = None,
) -> GeneratorLoss:
    """L_G = L_adv(G(x)) + nce_weight * [NCE(x, G(x)) + NCE(y, G(y))] (+ task.weight * task term).

    Pass fake_x = G(x) and identity_y = G(y) when they were already computed for the discriminator step;
    otherwise they are computed here. freq_nce=None (with a generator built with attention=False) is plain CUT.
    """
    if fake_x is None or identity_y is None:
        fake_x, identity_y = translate_both(generator, real_x, real_y)
    adversarial = lsgan_adversarial_loss(discriminator(fake_x))
    nce_translation = nce_loss(generator, heads, real_x, fake_x, freq_nce, num_patches, tau)
    nce_identity = nce_loss(generator, heads, real_y, identity_y, freq_nce, num_patches, tau)
    total = adversarial + nce_weight * (nce_translation + nce_identity)
    task_term = task(real_x, fake_x) if task is not None else None
    if task_term is not None:
        total = total + task.weight * task_term
    return GeneratorLoss(total, adversarial, nce_translation, nce_identity, task_term)


def translator_step(
    generator: nn.Module,
    discriminator: nn.Module,
    heads: PatchSampleMLP,
    optimizer_g: torch.optim.Optimizer,
    optimizer_d: torch.optim.Optimizer,
    real_x: torch.Tensor,
    real_y: torch.Tensor,
    freq_nce: FreqNCE | None = None,
    num_patches: int = 256,
    tau: float = DEFAULT_TAU,
    nce_weight: float = 0.5,
    task: "TaskConsistency | None" = None,
) -> dict[str, float]:
    """One ADA-Net update: D first, then G together with both projection heads (optimizer_g must hold the
    parameters of the generator, `heads` and `freq_nce`). Returns the losses as floats."""
    fake_x, identity_y = translate_both(generator, real_x, real_y)

    discriminator.requires_grad_(True)
    optimizer_d.zero_grad(set_to_none=True)
    loss_d = lsgan_discriminator_loss(discriminator(fake_x.detach()), discriminator(real_y))
    loss_d.backward()
    optimizer_d.step()

    # Frozen during the G step so the adversarial term does not leave stale gradients in D.
    discriminator.requires_grad_(False)
    try:
        optimizer_g.zero_grad(set_to_none=True)
        loss_g = generator_objective(generator, discriminator, heads, real_x, real_y, fake_x, identity_y,
                                     freq_nce, num_patches, tau, nce_weight, task)
        loss_g.total.backward()
        optimizer_g.step()
    finally:
        discriminator.requires_grad_(True)
    return {
        "loss_d": loss_d.item(),
        "loss_g": loss_g.total.item(),
        "loss_adv": loss_g.adversarial.item(),
        "nce_translation": loss_g.nce_translation.item(),
        "nce_identity": loss_g.nce_identity.item(),
        **({"task": loss_g.task.item()} if loss_g.task is not None else {}),
    }


class TaskConsistency(nn.Module):
    """An addition to ADA-Net (not in the paper): a frozen segmenter of the target domain should answer the
    same on G(x) as on x, so the translator may change the look of the imagery but not the evidence for a
    dead crown. Soft-target BCE on the segmenter's logits plus soft Dice against its answer on x: dead crowns
    cover ~2% of the pixels, so in a mean BCE alone a translation that erases them costs almost nothing, while
    Dice, like the IoU the study scores, is about the positives. The weights never change; the gradient reaches G.

    `segmenter` reads 0..1 stretch units in the order `channels` picks from the translator's bands; the
    translator works in [-1, 1]."""

    def __init__(self, segmenter: nn.Module, channels: Sequence[int], weight: float = 1.0):
        super().__init__()
        self.segmenter = segmenter.eval().requires_grad_(False)
        self.register_buffer("channels", torch.tensor(list(channels), dtype=torch.long), persistent=False)
        self.weight = weight

    def train(self, mode: bool = True) -> "TaskConsistency":
        return super().train(False)  # batch-norm statistics stay those of the segmenter's own training

    def _logits(self, model_range: torch.Tensor) -> torch.Tensor:
        unit = (model_range.index_select(1, self.channels) + 1) / 2
        return self.segmenter(unit)

    def forward(self, real_x: torch.Tensor, fake_x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = torch.sigmoid(self._logits(real_x))
        logits = self._logits(fake_x).float()
        target = target.float()
        return F.binary_cross_entropy_with_logits(logits, target) + soft_dice_loss(logits, target)
