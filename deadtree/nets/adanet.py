"""ADA-Net translator networks: the attention-guided ResNet generator and the StyleGAN2-style residual discriminator.

Written for this project from the method description in docs/ADANET.md (Ahishali et al., arXiv:2504.04271). The
generator maps 4-band source-domain patches in [-1, 1] into the look of the target domain; the discriminator
tells translated patches from real target ones. Both are training-side only.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Indices into ResnetAttentionGenerator.encode_features(): the five depths PatchNCE compares.
NCE_DEPTH_NAMES = ("padded_input", "first_downsample", "bottleneck_input", "first_attention", "second_attention")


def _reflect_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Conv with reflection padding and no bias: every such conv is followed by instance norm, which would
    subtract the bias straight away, and reflection keeps zero borders from leaking into translated tiles."""
    return nn.Sequential(
        nn.ReflectionPad2d(kernel_size // 2),
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, bias=False),
    )


class ResidualBlock(nn.Module):
    """pad-conv3x3-IN-ReLU-pad-conv3x3-IN plus the skip."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            _reflect_conv(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            _reflect_conv(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SelfAttention2d(nn.Module):
    """SAGAN-style self-attention over all spatial positions: y = gamma * (v . softmax(q^T k)^T) + x.

    gamma starts at 0, so a freshly built block is exactly the identity and the generator first learns as a plain
    ResNet translator, letting the attention path grow in only as far as it helps.
    """

    def __init__(self, channels: int, key_channels: int | None = None):
        super().__init__()
        key_channels = key_channels if key_channels is not None else max(1, channels // 8)
        self.query = _reflect_conv(channels, key_channels, 3)
        self.key = _reflect_conv(channels, key_channels, 3)
        self.value = _reflect_conv(channels, channels, 3)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape

        def tokens(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1 head, H*W, C)
            return t.flatten(2).transpose(1, 2).unsqueeze(1)

        # The fused kernel computes softmax(q k^T) v without materialising the (H*W)^2 attention map where the
        # backend allows it: at 256 px that map is 4096 x 4096 per image, the method's memory hot spot.
        # scale=1 because the method uses the raw dot products (no 1/sqrt(d) factor).
        attended = F.scaled_dot_product_attention(
            tokens(self.query(x)), tokens(self.key(x)), tokens(self.value(x)), scale=1.0
        )
        attended = attended.squeeze(1).transpose(1, 2).reshape(batch, channels, height, width)
        return x + self.gamma * attended


def _attention_stage(channels: int) -> nn.Sequential:
    # The instance norm after the attention block keeps the bottleneck statistics the next Res block expects.
    return nn.Sequential(SelfAttention2d(channels), nn.InstanceNorm2d(channels))


class ResnetAttentionGenerator(nn.Module):
    """The ADA-Net generator (about 7 M parameters at the paper's width 64 with 4 bands).

    Encoder (7x7 conv, two stride-2 3x3 convs) -> bottleneck Res, Attn, Res, Res, Attn, Res at 1/4 resolution ->
    decoder (two stride-2 transposed convs, 7x7 conv, tanh). `width` scales every channel count, so narrow
    CPU-sized variants exist. attention=False drops the two attention blocks: the plain CUT generator used as
    the ablation baseline; its NCE features are then taken after the Res blocks that precede the missing ones.
    Input sides must be multiples of 4 so the decoder restores the input size exactly.
    """

    def __init__(self, in_bands: int = 4, out_bands: int = 4, width: int = 64, attention: bool = True):
        super().__init__()
        self.in_bands, self.out_bands, self.width, self.attention = in_bands, out_bands, width, attention
        w = width
        self.input_pad = nn.ReflectionPad2d(3)
        self.stem = nn.Sequential(
            nn.Conv2d(in_bands, w, 7, bias=False), nn.InstanceNorm2d(w), nn.ReLU(inplace=True)
        )
        # Split so the raw output of the first stride-2 conv (before its norm) can serve as an NCE depth.
        self.first_downsample = _reflect_conv(w, 2 * w, 3, stride=2)
        self.second_downsample = nn.Sequential(
            nn.InstanceNorm2d(2 * w),
            nn.ReLU(inplace=True),
            _reflect_conv(2 * w, 4 * w, 3, stride=2),
            nn.InstanceNorm2d(4 * w),
            nn.ReLU(inplace=True),
        )
        b = 4 * w
        # Bottleneck cut into three stages, each of the first two ending at an NCE depth.
        self.bottleneck_stage1 = nn.Sequential(ResidualBlock(b), *([_attention_stage(b)] if attention else []))
        self.bottleneck_stage2 = nn.Sequential(
            ResidualBlock(b), ResidualBlock(b), *([_attention_stage(b)] if attention else [])
        )
        self.bottleneck_stage3 = ResidualBlock(b)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(b, 2 * w, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.InstanceNorm2d(2 * w),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * w, w, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.InstanceNorm2d(w),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(w, out_bands, 7),  # the only conv with a bias: nothing normalises after it
            nn.Tanh(),
        )

    @property
    def feature_channels(self) -> tuple[int, ...]:
        """Channel count at each of the five NCE depths, to size the projection heads up front."""
        w = self.width
        return (self.in_bands, 2 * w, 4 * w, 4 * w, 4 * w)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_bands:
            raise ValueError(f"expected (B, {self.in_bands}, H, W) input, got {tuple(x.shape)}")
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"input sides must be multiples of 4, got {tuple(x.shape[-2:])}")

    def _run(self, x: torch.Tensor, decode: bool) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        self._check_input(x)
        features = []
        h = self.input_pad(x)
        features.append(h)
        h = self.first_downsample(self.stem(h))
        features.append(h)
        h = self.second_downsample(h)
        features.append(h)
        h = self.bottleneck_stage1(h)
        features.append(h)
        h = self.bottleneck_stage2(h)
        features.append(h)
        if not decode:  # feature extraction for NCE never needs the rest of the network
            return None, features
        return self.decoder(self.bottleneck_stage3(h)), features

    def encode_features(self, x: torch.Tensor, depths: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Features at the NCE depths (all five, in NCE_DEPTH_NAMES order, unless `depths` picks a subset)."""
        _, features = self._run(x, decode=False)
        return features if depths is None else [features[i] for i in depths]

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        out, features = self._run(x, decode=True)
        return (out, features) if return_features else out


# --------------------------------------------------------------------------------------------------------------
# Discriminator. StyleGAN2 conventions: equalised learning rate (weights drawn N(0, 1), rescaled by 1/sqrt(fan_in)
# at run time, so Adam's per-parameter step sizes are uniform across layers), leaky ReLU scaled by sqrt(2) to keep
# unit variance, residual sums scaled by 1/sqrt(2), and a [1, 3, 3, 1] blur before every downsampling to limit
# aliasing.

_LEAKY_SLOPE = 0.2


def _scaled_leaky_relu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, _LEAKY_SLOPE) * math.sqrt(2.0)


class EqualizedConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        out_channels, in_channels, k, _ = self.weight.shape
        return (f"{in_channels}, {out_channels}, kernel_size={k}, stride={self.stride}, padding={self.padding}, "
                f"bias={self.bias is not None}")


class EqualizedLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = 1.0 / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}"


class Blur(nn.Module):
    """Depthwise [1, 3, 3, 1] x [1, 3, 3, 1] low-pass filter with explicit zero padding (top/left, bottom/right)."""

    def __init__(self, channels: int, padding: tuple[int, int]):
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = torch.outer(taps, taps)
        kernel = kernel / kernel.sum()
        self.register_buffer("kernel", kernel.expand(channels, 1, 4, 4).clone(), persistent=False)
        self.padding = padding
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before, after = self.padding
        x = F.pad(x, (before, after, before, after))
        return F.conv2d(x, self.kernel.to(x.dtype), groups=self.channels)


class DownsamplingResBlock(nn.Module):
    """conv3x3 -> blur -> stride-2 conv3x3 on the main path, blur -> stride-2 1x1 conv on the skip; halves H, W.

    Paddings are chosen so blur + strided conv maps an even side s to exactly s / 2.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = EqualizedConv2d(in_channels, in_channels, 3, padding=1)
        self.blur = Blur(in_channels, padding=(2, 2))
        self.down_conv = EqualizedConv2d(in_channels, out_channels, 3, stride=2)
        self.skip_blur = Blur(in_channels, padding=(1, 1))
        self.skip_conv = EqualizedConv2d(in_channels, out_channels, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = _scaled_leaky_relu(self.conv(x))
        main = _scaled_leaky_relu(self.down_conv(self.blur(main)))
        skip = self.skip_conv(self.skip_blur(x))
        return (main + skip) / math.sqrt(2.0)


def discriminator_channels(resolution: int, base_channels: int = 64) -> int:
    """Channels at a given feature-map side: 64-128-256 from 256 px down to 64 px, then capped at 384 (for the
    default base of 64); every count scales with base_channels."""
    return max(1, int(min(6 * base_channels, base_channels * 256 / resolution)))


class ResidualDiscriminator(nn.Module):
    """StyleGAN2-style residual discriminator, one least-squares score per image.

    1x1 conv to the channels of `image_size`, one DownsamplingResBlock per halving down to 4 px, a 3x3 conv, then
    two linear layers. With `tiled_crop` set, the network is built for crops of that side instead and each image
    is scored on `num_crops` random crops (default: enough crops to cover the image area once on average);
    `reduce_crops` chooses between their mean, shape (B, 1), and one score per crop, shape (B, num_crops).
    """

    def __init__(self, in_bands: int = 4, image_size: int = 256, tiled_crop: int | None = None,
                 num_crops: int | None = None, reduce_crops: bool = True, base_channels: int = 64):
        super().__init__()
        if tiled_crop is not None and not 0 < tiled_crop <= image_size:
            raise ValueError(f"tiled_crop must lie in (0, image_size={image_size}], got {tiled_crop}")
        net_size = tiled_crop or image_size
        if net_size < 8 or net_size & (net_size - 1):
            raise ValueError(f"the scored side must be a power of two >= 8, got {net_size}")
        self.in_bands, self.image_size, self.tiled_crop = in_bands, image_size, tiled_crop
        self.num_crops = num_crops or (max(1, (image_size // tiled_crop) ** 2) if tiled_crop else 1)
        self.reduce_crops = reduce_crops

        channels = discriminator_channels(net_size, base_channels)
        layers: list[nn.Module] = [EqualizedConv2d(in_bands, channels, 1)]
        side = net_size
        while side > 4:
            out_channels = discriminator_channels(side // 2, base_channels)
            layers.append(DownsamplingResBlock(channels, out_channels))
            channels, side = out_channels, side // 2
        self.from_bands = layers[0]
        self.blocks = nn.Sequential(*layers[1:])
        self.final_conv = EqualizedConv2d(channels, channels, 3, padding=1)
        self.final_linear = EqualizedLinear(channels * 4 * 4, channels)
        self.score = EqualizedLinear(channels, 1)

    def _score_whole(self, x: torch.Tensor) -> torch.Tensor:
        h = _scaled_leaky_relu(self.from_bands(x))
        h = self.blocks(h)
        h = _scaled_leaky_relu(self.final_conv(h))
        h = _scaled_leaky_relu(self.final_linear(h.flatten(1)))
        return self.score(h)

    def random_crops(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B * num_crops, C, s, s), independent crop corners for every image."""
        batch, _, height, width = x.shape
        s = self.tiled_crop
        if height < s or width < s:
            raise ValueError(f"image {height}x{width} is smaller than the {s} px crop")
        ys = torch.randint(0, height - s + 1, (batch, self.num_crops)).tolist()
        xs = torch.randint(0, width - s + 1, (batch, self.num_crops)).tolist()
        crops = [x[b, :, y:y + s, c:c + s] for b in range(batch) for y, c in zip(ys[b], xs[b])]
        return torch.stack(crops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_bands:
            raise ValueError(f"expected (B, {self.in_bands}, H, W) input, got {tuple(x.shape)}")
        if self.tiled_crop is None:
            if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
                raise ValueError(f"built for {self.image_size} px images, got {tuple(x.shape[-2:])}")
            return self._score_whole(x)
        scores = self._score_whole(self.random_crops(x)).view(x.shape[0], self.num_crops)
        return scores.mean(dim=1, keepdim=True) if self.reduce_crops else scores
