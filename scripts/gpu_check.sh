#!/usr/bin/env bash
# The prepared GPU check of issue 15 (docs/performance.md, "GPU check"): `abanet benchmark` for
# abanet_r34, basnet_r34 and abanet_lite at 256 and 512, batch 64/8/1, backends eager,
# channels_last, fp16, bf16, onnxruntime (CUDA EP), tensorrt and compile, plus abanet_r34's
# training images/s with 16-mixed. Writes OUT/gpu_check.json and OUT/gpu_check.md (rewritten after
# every cell) and OUT/nvidia-smi.txt. Built to finish within 8 minutes on one H100/H200.
#
#   scripts/gpu_check.sh [--out DIR] [--limit SECONDS] [--toy] [gpu_check.py options ...]
#
# --toy: the same code on CPU at toy settings (64x64, batch 1, eager, one run): tests/ runs it.
# --limit: hard stop (default 470 s; the script's own cell budget is --budget, default 420 s).
# Python: $PYTHON, else .venv/bin/python, else python3. Packages missing on the machine (e.g.
# segmentation-models-pytorch on a bare GPU image) can be carried as wheels in .whl/: they are
# installed into a temporary folder first (docs/performance.md shows the download command).
set -euo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-gpu_check_out}"
limit=470
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --limit) limit="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
mkdir -p "$out"

py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
if compgen -G ".whl/*.whl" >/dev/null; then
  site="${TMPDIR:-/tmp}/abanet-gpu-check-site"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1
export ABANET_CACHE_DIR="${ABANET_CACHE_DIR:-${TMPDIR:-/tmp}/abanet-gpu-check-cache}"

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
fi
# `abanet benchmark` must import: say which package is missing before spending the budget
"$py" -c "import abanet.inference.benchmark, abanet.models" || {
  echo "gpu_check: abanet does not import with $py (see above); carry the missing wheels in .whl/" >&2
  exit 2
}
exec timeout --kill-after=10 "$limit" "$py" scripts/gpu_check.py --out "$out" "${args[@]}"
