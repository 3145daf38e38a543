"""State and errors shared by the integration's parts: the supported range, the stock functions we wrap, our
error types."""

from __future__ import annotations

import ultralytics

from ...registry import CFG_DIR  # noqa: F401  (re-exported)

SUPPORTED = ("8.3.215", "8.5")  # [lowest tested, first unsupported)


class ModelYAMLError(ValueError):
    """A model YAML row that cannot be built; names the layer index, the row and what is wrong."""

    def __init__(self, layer: int | None, row, problem: str):
        self.layer, self.row, self.problem = layer, row, problem
        where = f"layer {layer} {row!r}" if layer is not None else f"row {row!r}"
        super().__init__(f"model YAML {where}: {problem}")


class CheckpointError(TypeError):
    """A checkpoint that cannot be loaded (corrupt, truncated, or made by a newer yolo-improve); names the file.

    A TypeError, like Ultralytics' own error for an unreadable checkpoint, so callers catch both the same way."""


class UnsupportedUltralytics(ImportError):
    """The installed Ultralytics is outside the range this package was tested with."""


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in v.split(".")[:3])


def check_version(version: str | None = None) -> str:
    """Fail loudly, with the fix, when Ultralytics is outside the supported range."""
    version = version or ultralytics.__version__
    lo, hi = SUPPORTED
    if not (version_tuple(lo) <= version_tuple(version) < version_tuple(hi)):
        raise UnsupportedUltralytics(
            f"yolo-improve supports ultralytics>={lo},<{hi}, but ultralytics=={version} is installed. "
            f"Install a supported version: pip install 'ultralytics>={lo},<{hi}'"
        )
    return version

# the stock Ultralytics functions install() replaced, by their dotted target, so that the wrappers can call them
_STOCK: dict = {}


def stock(target: str):
    """The stock function a table entry replaced (``"ultralytics.nn.tasks.parse_model"``)."""
    return _STOCK[target]


def package_version() -> str:
    from ... import __version__

    return __version__
