#!/usr/bin/env bash
# The two things a developer or CI runs, each doing all set-up on a fresh machine:
#   bash tasks.sh demo   # the main job on the bundled sample
#   bash tasks.sh test   # the test suite
set -euo pipefail
cd "$(dirname "$0")"
VENV=${YOLO_IMPROVE_VENV:-.venv}
PY=${PYTHON:-python3}

setup() {
  local stamp="$VENV/.yolo-improve-installed"
  local want
  want=$(cat pyproject.toml tasks.sh | sha1sum | cut -d' ' -f1)
  if [ ! -x "$VENV/bin/python" ]; then "$PY" -m venv "$VENV"; fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch is pinned: an unpinned install may pick a torch without a matching torchvision build
    "$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" "cloudpickle>=3.1.1" \
      -e ".[test,deploy,ray]"  # deploy: OpenVINO/NCNN for the export matrix; ray: compare engine=ray
    echo "$want" > "$stamp"
  fi
  # offline by design: nothing at run time may need the network
  export YOLO_OFFLINE=true YOLO_AUTOINSTALL=false YOLO_CONFIG_DIR=${YOLO_CONFIG_DIR:-$PWD/.yolo-config}
  export PATH="$PWD/$VENV/bin:$PATH"
}

case "${1:-}" in
  demo) setup; shift; exec yolo-improve demo "$@" ;;
  test)
    setup; shift
    if [ $# -gt 0 ]; then exec python -m pytest -q "$@"; fi
    python -m pytest -q
    # the integration subset again on the lowest supported Ultralytics, overlaid on the same environment
    low="$VENV/ultralytics-8.3.215"
    [ -d "$low/ultralytics" ] || python -m pip install -q --no-deps --target "$low" "ultralytics==8.3.215"
    echo "== integration subset on ultralytics 8.3.215 =="
    PYTHONPATH="$PWD/$low" python -m pytest -q -p no:cacheprovider \
      tests/test_integration.py tests/test_workflow.py tests/test_hardening.py tests/test_yaml_fuzz.py
    ;;
  setup) setup ;;
  *) echo "usage: bash tasks.sh {demo|test|setup} [args]"; exit 2 ;;
esac
