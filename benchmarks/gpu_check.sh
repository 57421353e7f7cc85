#!/usr/bin/env bash
# One prepared GPU check (about 8-10 minutes on an H100/H200):
#   1. at the real FLUX.1-Fill-dev shapes (random weights), in one table -> benchmarks/gpu_check.md (+ .json):
#      s/step eager, with --cache fbcache, compiled and fp8 at 1536² and 768²; a whole panel at each
#      --budget preset (fast, balanced = the default, thorough) with the σ of each rung; the print pass
#      (--upscale 2) on a square, a wide and a tall panel
#   2. runs the cuda-marked tests (tests/test_cuda.py): bf16 pixel equality with FluxFillPipeline,
#      peak memory on the chosen device, compile with fp8 and offload, VAE tiling.
#
#   benchmarks/gpu_check.sh                 # on the GPU machine
#   benchmarks/gpu_check.sh --smoke         # tiny model, CPU is fine (CI): the same code end to end
#   benchmarks/gpu_check.sh --wheels DIR    # offline machine: install missing packages from wheels first
#
# Environment: PYTHON (default python3), IPPROMPT_CUDA_DEVICE (default cuda:0).
# Needs torch with CUDA, diffusers>=0.40, transformers>=5, pydantic, typer, rich, jinja2, filelock,
# safetensors, peft; torchao for the fp8 compute path. On a machine without network, download the
# missing ones as wheels elsewhere (pip download --no-deps --only-binary=:all: ... -d DIR) and pass --wheels DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
SMOKE=()
WHEELS=""
MD_OUT="benchmarks/gpu_check.md"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=(--smoke); MD_OUT="$(mktemp -d)/gpu_check_smoke.md"; shift ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --out) MD_OUT="$2"; shift 2 ;;
    *) echo "unknown option: $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
if [[ -n "$WHEELS" ]]; then
  SITE="$(mktemp -d)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
DEVICE="${IPPROMPT_CUDA_DEVICE:-auto}"
"$PY" -c "import torch; print('torch', torch.__version__, '| CUDA:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')"
status=0
"$PY" benchmarks/gpu_check.py "${SMOKE[@]}" --device "$DEVICE" --out "$MD_OUT" || status=$?
"$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py || status=$?
exit $status
