#!/usr/bin/env bash
# `make gpu-check`: scripts/gpu_check.py, also on a bare GPU machine without network. Wheels in .whl/
# (what the machine lacks: basicsr, lmdb, addict, yapf, ultralytics, onnx, onnxruntime, ...; see
# ../shared/device/make_wheels.sh) are installed into a scratch folder first; nothing is downloaded.
# Usage, from anywhere:  bash scripts/gpu_check.sh [--dry-run] [other gpu_check.py options]
# PYTHON: the interpreter (default .venv/bin/python when present, else python3); OUT: the results
# folder (default experiments/gpu_check); WORK: the scratch folder (default a new one in /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
WORK=${WORK:-$(mktemp -d /tmp/moesr_gpu_check.XXXXXX)}
if compgen -G '.whl/*.whl' >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .whl/*.whl
  export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH}
fi
# ultralytics must not download or pip-install anything, nor write its settings into $HOME.
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 YOLO_CONFIG_DIR=$WORK/yolo MPLBACKEND=Agg
[ -d datasets/demo ] || "$PY" scripts/data_preparation/make_demo_dataset.py >/dev/null
exec "$PY" scripts/gpu_check.py --work "$WORK/runs" --output "${OUT:-experiments/gpu_check}" "$@"
