"""Narrow a trained U-Net's decoder, so that a cheaper network starts from trained weights.

The decoder holds over half of a four-stage ResNet-18 U-Net's multiply-adds, mostly in its high-resolution
stages. Training a narrower decoder from scratch on this project's CPU costs many hours. Here the encoder is
copied whole, and each decoder convolution keeps the wide model's most useful channels: mean activation on
real training crops times the weight the next layer gives them, so that dead and ignored channels go first.
Halving every decoder layer at once does not keep the decoder's function (docs/models.md), so the result is
a start for fine-tuning, not a finished network.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def decoder_widths(model: nn.Module) -> tuple[int, ...]:
    return tuple(block.conv2[0].out_channels for block in model.decoder.blocks)


def same_encoder(wide: nn.Module, narrow: nn.Module) -> bool:
    """Whether the two networks share the encoder's layout, so that only the decoder needs narrowing."""
    a, b = wide.encoder.state_dict(), narrow.encoder.state_dict()
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)


@torch.no_grad()
def narrow_decoder(wide: nn.Module, narrow: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Load into `narrow` the encoder of `wide` and, for each decoder convolution, the output channels of `wide`
    that matter most on `batches`. Both must be smp U-Nets with the same encoder and number of decoder blocks,
    `narrow`'s decoder no wider than `wide`'s anywhere. Returns `narrow`."""
    if not same_encoder(wide, narrow):
        raise ValueError("the two networks have different encoders; only the decoder can be narrowed")
    wide_blocks, narrow_blocks = list(wide.decoder.blocks), list(narrow.decoder.blocks)
    if len(wide_blocks) != len(narrow_blocks):
        raise ValueError("the two decoders have a different number of blocks")
    if any(n > w for n, w in zip(decoder_widths(narrow), decoder_widths(wide))):
        raise ValueError(f"decoder {decoder_widths(narrow)} is not narrower than {decoder_widths(wide)}")

    activity = _mean_activity(wide, batches)
    narrow.encoder.load_state_dict(wide.encoder.state_dict())
    kept_before = None  # channels kept at the previous block's output (None: the encoder's, all kept)
    for i, (source, target) in enumerate(zip(wide_blocks, narrow_blocks)):
        next_conv = wide_blocks[i + 1].conv1[0] if i + 1 < len(wide_blocks) else wide.segmentation_head[0]
        # The input is [upsampled previous output, encoder skip]: keep the previous block's kept channels
        # and every skip channel. Block 0 upsamples the encoder's deepest output, which stays whole.
        upsampled = wide.encoder.out_channels[-1] if i == 0 else wide_blocks[i - 1].conv2[0].out_channels
        inputs = _input_channels(source.conv1[0].in_channels, upsampled, kept_before)
        keep1 = _most_useful(activity[f"{i}.conv1"], source.conv2[0].weight, target.conv1[0].out_channels)
        keep2 = _most_useful(activity[f"{i}.conv2"], next_conv.weight[:, :source.conv2[0].out_channels],
                             target.conv2[0].out_channels)
        _copy_conv_bn(source.conv1, target.conv1, keep1, inputs)
        _copy_conv_bn(source.conv2, target.conv2, keep2, keep1)
        kept_before = keep2
    head_src, head_dst = wide.segmentation_head[0], narrow.segmentation_head[0]
    head_dst.weight.copy_(head_src.weight[:, kept_before])
    head_dst.bias.copy_(head_src.bias)
    return narrow


def _input_channels(total: int, upsampled: int, kept_before) -> torch.Tensor:
    head = torch.arange(upsampled) if kept_before is None else kept_before
    return torch.cat([head, torch.arange(upsampled, total)])


def _most_useful(activity: torch.Tensor, consumer_weight: torch.Tensor, count: int) -> torch.Tensor:
    """Indices (sorted) of the `count` channels with the largest mean activation x |weight| the next layer
    gives them."""
    usage = consumer_weight.abs().sum(dim=(0, 2, 3))
    score = activity * usage
    return torch.sort(torch.topk(score, count).indices).values


def _copy_conv_bn(source: nn.Sequential, target: nn.Sequential, outputs: torch.Tensor, inputs: torch.Tensor):
    conv_s, bn_s, conv_t, bn_t = source[0], source[1], target[0], target[1]
    conv_t.weight.copy_(conv_s.weight[outputs][:, inputs])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(bn_t, name).copy_(getattr(bn_s, name)[outputs])
    bn_t.num_batches_tracked.copy_(bn_s.num_batches_tracked)


def _mean_activity(model: nn.Module, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean absolute output (after ReLU) of every channel of every decoder convolution over the batches."""
    sums: dict[str, torch.Tensor] = {}
    count = [0]
    hooks = []
    for i, block in enumerate(model.decoder.blocks):
        for name in ("conv1", "conv2"):
            key = f"{i}.{name}"

            def record(_module, _inputs, output, key=key):
                sums[key] = sums.get(key, 0) + output.detach().abs().float().mean(dim=(0, 2, 3)) * output.shape[0]

            hooks.append(getattr(block, name).register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(batch)
            count[0] += batch.shape[0]
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    if not count[0]:
        raise ValueError("no batches to measure the decoder's channels on")
    return {key: total / count[0] for key, total in sums.items()}
