"""Four-output backbones (P2..P5 at strides 4/8/16/32) with a declared ``channels`` list."""

import math


def scale_widths(widths, width: float, max_channels: float = math.inf, divisor: int = 8) -> tuple[int, ...]:
    """Apply a channel multiplier the way Ultralytics scales layer widths: ``min(w, max_channels) * width``, rounded up
    to a multiple of 8 (so a model scale's ``max_channels`` bounds a backbone as it bounds every stock row)."""
    return tuple(max(divisor, math.ceil(min(w, max_channels) * width / divisor) * divisor) for w in widths)
