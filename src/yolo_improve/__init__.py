"""yolo-improve: published improvement modules for stock Ultralytics YOLO26, YOLO11 and YOLOv8.

Importing the package installs the integration with Ultralytics (idempotent), so that ``YOLO('x.yaml')`` builds
YAMLs that name our modules and checkpoints that contain them load anywhere the package is installed.
"""

__version__ = "0.1.0"

from .integrations.ultralytics import ModelYAMLError, install  # noqa: E402
from .reparam import reparameterize  # noqa: E402
from .swap import swap  # noqa: E402

install()

__all__ = ["ModelYAMLError", "__version__", "install", "reparameterize", "swap"]
