"""Four-output backbones (P2..P5 at strides 4/8/16/32) with a declared ``channels`` list."""

import math


def scale_widths(widths, width: float, divisor: int = 8) -> tuple[int, ...]:
    """Apply a channel multiplier the way Ultralytics scales layer widths (round up to a multiple of 8)."""
    return tuple(max(divisor, math.ceil(w * width / divisor) * divisor) for w in widths)
