"""State and errors shared by the integration's parts: the supported range, the stock functions we wrap, our
error types."""

from __future__ import annotations

import ultralytics

from ...registry import CFG_DIR  # noqa: F401  (re-exported)

SUPPORTED = ("8.3.215", "8.5")  # [lowest tested, first unsupported)


class ModelYAMLError(ValueError):
    """A model YAML row that cannot be built; names the layer index, the row and what is wrong."""

    def __init__(self, layer: int | None, row, problem: str):
        super().__init__()
        _set_fields(self, layer, row, problem)

    like_type: type | None = None  # the stock type this error also is (``like``)

    def __str__(self) -> str:  # our message, also where the error doubles as a stock type with its own (``like``)
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):  # pickled by how it was made (Ray and multiprocessing send errors between processes)
        return _unpickle, (self.like_type, self.layer, self.row, self.problem)


_LIKE: dict[type, type] = {}  # stock exception type -> the ModelYAMLError subclass that is also of that type


def like(original: BaseException, layer: int | None, row, problem: str) -> ModelYAMLError:
    """A ``ModelYAMLError`` naming the row, that is also an instance of ``original``'s type (``URLError``,
    ``KeyError``, ...): an error the stock parser raised keeps its type, so code that catches the stock type still
    catches it, and our callers still catch ``ModelYAMLError``. It carries ``original``'s attributes
    (``URLError.reason``, ``OSError.errno``); where the two types cannot be combined it is a plain ``ModelYAMLError``
    with the original as its ``__cause__`` (set by ``raise ... from``)."""
    base = type(original)
    if isinstance(original, ModelYAMLError):
        return original
    cls = _LIKE.get(base)
    if cls is None:
        try:
            cls = (
                ModelYAMLError
                if issubclass(ModelYAMLError, base)
                else type(
                    "ModelYAMLError",
                    (ModelYAMLError, base),
                    {"__module__": __name__, "__qualname__": f"ModelYAMLError({base.__name__})", "like_type": base},
                )
            )
        except TypeError:  # a type that no class can share (layout conflict, a final type)
            cls = ModelYAMLError
        _LIKE[base] = cls
    if cls is ModelYAMLError:
        return ModelYAMLError(layer, row, problem)
    err = base.__new__(cls)  # OSError's layout needs its own __new__; no __init__: stock types differ in signature
    if isinstance(original, OSError):  # its fields live outside __dict__
        for name in ("errno", "strerror", "filename", "filename2"):
            setattr(err, name, getattr(original, name))
    err.__dict__.update(vars(original))
    _set_fields(err, layer, row, problem)
    return err


def _set_fields(err: ModelYAMLError, layer: int | None, row, problem: str) -> None:
    err.layer, err.row, err.problem = layer, row, problem
    where = f"layer {layer} {row!r}" if layer is not None else f"row {row!r}"
    err.args = (f"model YAML {where}: {problem}",)


def _unpickle(base: type | None, layer, row, problem) -> ModelYAMLError:
    return ModelYAMLError(layer, row, problem) if base is None else like(base.__new__(base), layer, row, problem)


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
