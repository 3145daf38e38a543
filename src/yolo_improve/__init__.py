"""yolo-improve: published improvement modules for stock Ultralytics YOLO26, YOLO11 and YOLOv8, and a plug-in API for
your own.

Importing the package installs the integration with Ultralytics (idempotent), so that ``YOLO('x.yaml')`` builds
YAMLs that name registered modules and checkpoints that contain them load anywhere the package is installed.
``register`` makes a module class of your own nameable in YAMLs; ``yolo-improve check`` tests it against the
contract every module of the package passes.
"""

__version__ = "0.1.0"

from .explain import explain  # noqa: E402  (imports grad-cam, OpenCV and matplotlib only when called)
from .integrations.ultralytics import ModelYAMLError, install, uninstall  # noqa: E402
from .registry import register  # noqa: E402
from .reparam import reparameterize  # noqa: E402
from .swap import swap  # noqa: E402

install()

__all__ = ["ModelYAMLError", "__version__", "explain", "install", "register", "reparameterize", "swap", "uninstall"]
