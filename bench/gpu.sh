#!/usr/bin/env bash
# One command for a GPU machine (about 6-8 minutes on one H100/H200):
#
#     bash bench/gpu.sh [RESULTS.md]        # default: gpu_results.md in the repo root
#
# 1. bench/sampling.py: LLaMA-medium (the reference "medium") AR decoding in bf16 at batch 1
#    and 64, eager and compiled (CUDA graphs), against the memory-read bound of the run;
#    NAR (MaskGIT, 12 steps) against AR at the same size and batch.
# 2. bench/train_step.py: the VQGAN 8192_dd2 iteration at batch 8 in fp32, --autocast,
#    channels_last and compiled; encode/decode images/s.
# 3. bench/vqkd_step.py: the VQ-KD iteration with the CLIP ViT-B/16 teacher (random
#    weights) at batch 64 in fp32, --autocast and compiled.
# 4. bench/quantizers.py: the nearest-code search on CUDA.
# 5. Every demo config (configs/demo) trained as configured (300-400 iterations) on one GPU
#    with --autocast (one process, nccl), in the order of their dependencies (decoder on
#    the VQ-KD run, AR and NAR on the VQGAN run): it/s and peak memory of each run's last
#    log line.
#
# Everything goes into one markdown file with the device, torch version and date; paste
# its tables into docs/performance.md. Nothing here is run by tests or CI.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_results.md}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export VQ_WORK_DIRS="$WORK/work_dirs"
PY="uv run python"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >/dev/null
{
  echo "# GPU results"
  echo
  echo "- device: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"
  echo "- torch: $($PY -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
  echo "- command: bash bench/gpu.sh"
  echo
} >"$OUT"

section() {  # title, command...: the command's output as a fenced block
  local title="$1"
  shift
  echo "## $title" >>"$OUT"
  echo >>"$OUT"
  echo '```' >>"$OUT"
  echo "\$ $*" >>"$OUT"
  "$@" 2>&1 | tee -a "$OUT" || echo "FAILED (exit $?)" | tee -a "$OUT"
  echo '```' >>"$OUT"
  echo >>"$OUT"
}

section "AR / NAR sampling, bf16, medium" \
  $PY bench/sampling.py --device cuda --presets medium --dtypes bf16 --batches 1 64 \
  --cached-tokens 64 --compile --repeats 3
section "VQGAN 8192_dd2 iteration, batch 8" \
  $PY bench/train_step.py --device cuda --batch-sizes 8 --steps 5 --channels-last --compile
section "VQ-KD CLIP iteration, batch 64" \
  $PY bench/vqkd_step.py --device cuda --batch-sizes 64 --steps 5 --compile
section "nearest-code search" $PY bench/quantizers.py --device cuda --repeats 10

# demos as configured, one GPU, --autocast; a run's last log line has it/s and mem
demo() {  # name, config, extra args...
  local name="$1" config="$2"
  shift 2
  uv run train "demo/$name" "configs/demo/$config" --nproc 1 --autocast "$@" >/dev/null 2>&1 \
    || { echo "| $name | failed | | |" >>"$OUT"; return 0; }
  local line
  line="$(grep -h ' it/s ' "$VQ_WORK_DIRS/demo/$name"/logs/*.log | tail -1)"
  local rate mem
  rate="$(sed -E 's/.*\| ([0-9.]+) it\/s.*/\1/' <<<"$line")"
  mem="$(sed -E 's/.*\| mem ([^ ]+) .*/\1/' <<<"$line")"
  echo "| $name | $rate | $mem | \`$config\` |" >>"$OUT"
}

{
  echo "## Demo configs, 1 GPU, --autocast"
  echo
  echo "| demo | it/s (last log interval) | peak memory | config |"
  echo "|---|---|---|---|"
} >>"$OUT"
W="$VQ_WORK_DIRS/demo"
for pair in autoencoder:autoencoder_photos.py vqgan:vqgan_photos.py cvqvae:cvqvae_photos.py \
  fsq:fsq_photos.py vqkd:vqkd_photos.py cluster:cluster_photos.py; do
  demo "${pair%%:*}" "${pair#*:}"
done
demo decoder decoder_photos.py --config-options "it_config::$W/vqkd/vqkd_photos.py" \
  --load-model-from "$W/vqkd/checkpoints/latest"
for kind in ar nar; do
  demo "$kind" "${kind}_photos.py" --config-options "ir_config::$W/vqgan/vqgan_photos.py" \
    "ir_state_dict::$W/vqgan/checkpoints/latest"
done
echo >>"$OUT"
echo "wrote $OUT"
