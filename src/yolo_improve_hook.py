"""Start-up hook (loaded by ``yolo_improve_hook.pth``): makes every Python process see yolo-improve's modules.

The plain ``yolo`` CLI and Ultralytics' DDP child processes never import our package, yet they build models from
YAMLs and checkpoints that name our modules. Importing the whole package at every interpreter start would cost
seconds, so this file only arms a one-shot import hook: the moment ``ultralytics.nn.tasks`` has been executed, it
imports ``yolo_improve`` (which installs the integration). Processes that never touch Ultralytics pay nothing, and
those that do pay little: the package loads timm, the backbones and the layers only when a model needs them.
``YOLO_IMPROVE_HOOK=0`` disarms the hook (``benchmarks/import_time.py`` compares the two).
"""

import os
import sys

_TARGET = "ultralytics.nn.tasks"


class _ImportHook:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != _TARGET:
            return None
        sys.meta_path.remove(cls)  # one shot: let the regular finders locate the real module
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            exec_module = spec.loader.exec_module

            def exec_then_install(module):
                exec_module(module)
                try:
                    import yolo_improve  # noqa: F401  (installs the integration)
                except Exception as e:  # never break Ultralytics itself; explain instead
                    print(f"yolo-improve: integration not installed: {e}", file=sys.stderr)

            spec.loader.exec_module = exec_then_install
        return spec


if os.environ.get("YOLO_IMPROVE_HOOK", "1") != "0" and _TARGET not in sys.modules and _ImportHook not in sys.meta_path:
    sys.meta_path.insert(0, _ImportHook)
