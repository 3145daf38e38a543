"""Four-output backbones (P2..P5 at strides 4/8/16/32) with a declared ``channels`` list.

The timm families' variant tables live here, importable without timm (seconds to import): the registry lists
and names the variants from them, and ``backbones.timm`` builds them."""

import math


def scale_widths(widths, width: float, max_channels: float = math.inf, divisor: int = 8) -> tuple[int, ...]:
    """Apply a channel multiplier the way Ultralytics scales layer widths: ``min(w, max_channels) * width``, rounded up
    to a multiple of 8 (so a model scale's ``max_channels`` bounds a backbone as it bounds every stock row)."""
    return tuple(max(divisor, math.ceil(min(w, max_channels) * width / divisor) * divisor) for w in widths)


# RepViT (Wang et al., CVPR 2024). timm registers m0_9 .. m2_3; m0_6 is the m0_9 family at the official
# widths and depths. Widths are the stage embed dims; a channel multiplier scales them.
REPVIT = {
    "m0_6": ((40, 80, 160, 320), (1, 1, 8, 1)),
    "m0_9": ((48, 96, 192, 384), (2, 2, 14, 2)),
    "m1_0": ((56, 112, 224, 448), (2, 2, 14, 2)),
    "m1_1": ((64, 128, 256, 512), (2, 2, 12, 2)),
    "m1_5": ((64, 128, 256, 512), (4, 4, 24, 4)),
    "m2_3": ((80, 160, 320, 640), (6, 6, 34, 2)),
}

# ConvNeXt V2 (Woo et al., CVPR 2023): dims and depths of every variant timm registers as convnextv2_<name>.
CONVNEXTV2 = {
    "atto": ((40, 80, 160, 320), (2, 2, 6, 2)),
    "femto": ((48, 96, 192, 384), (2, 2, 6, 2)),
    "pico": ((64, 128, 256, 512), (2, 2, 6, 2)),
    "nano": ((80, 160, 320, 640), (2, 2, 8, 2)),
    "tiny": ((96, 192, 384, 768), (3, 3, 9, 3)),
    "base": ((128, 256, 512, 1024), (3, 3, 27, 3)),
    "large": ((192, 384, 768, 1536), (3, 3, 27, 3)),
    "huge": ((352, 704, 1408, 2816), (3, 3, 27, 3)),
}
