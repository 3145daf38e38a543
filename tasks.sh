#!/usr/bin/env bash
# The two things a developer or CI runs, each doing all set-up on a fresh machine:
#   bash tasks.sh demo   # the main job on the bundled sample
#   bash tasks.sh test   # the test suite, then the docs build and the linters (check)
#   bash tasks.sh check  # only the docs build (mkdocs build --strict) and ruff check + ruff format --check
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
      -e ".[test,deploy,ray,docs,lint]"  # deploy: OpenVINO/NCNN (export matrix); ray: engine=ray; docs, lint: check
    echo "$want" > "$stamp"
  fi
  # offline by design: nothing at run time may need the network
  export YOLO_OFFLINE=true YOLO_AUTOINSTALL=false YOLO_CONFIG_DIR=${YOLO_CONFIG_DIR:-$PWD/.yolo-config}
  export PATH="$PWD/$VENV/bin:$PATH"
}

# The documentation site and the linters, with the settings in mkdocs.yml and pyproject.toml. mkdocstrings reads
# the docstrings statically (griffe): the build imports neither torch nor the package, and trains nothing.
check() {
  ruff check .
  ruff format --check .
  local site
  site=$(mktemp -d)
  # not -q: mkdocs 1.6 with -q stops counting warnings, and --strict then passes a broken link
  NO_MKDOCS_2_WARNING=1 mkdocs build --strict --site-dir "$site"
  rm -rf "$site"
  echo "== docs build (mkdocs --strict), ruff check and ruff format --check: clean =="
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
    check
    ;;
  check) setup; check ;;
  setup) setup ;;
  *) echo "usage: bash tasks.sh {demo|test|check|setup} [args]"; exit 2 ;;
esac
