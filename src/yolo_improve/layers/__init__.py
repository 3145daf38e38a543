"""Convolution layers that replace Ultralytics' ``Conv`` in a YAML row (OREPA, AKConv)."""


def check_int(layer: str, name: str, value, minimum: int = 1) -> int:
    """A YAML argument that must be an int >= ``minimum``: refused with the layer and argument named, before torch
    meets it (a float or string kernel size otherwise ends in a bare torch TypeError; True would be read as 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{layer} argument {name} must be an int >= {minimum}, got {value!r}")
    return value
