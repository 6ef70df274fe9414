#!/bin/sh
# spectune export for sglang 0.5.23: fill the placeholders and run.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
: "${MODEL:?set MODEL to the target model (path or Hugging Face id)}"
: "${DRAFT:?set DRAFT to the draft model or head the deployment speculates with}"
exec python -m sglang.launch_server \
  --model-path "$MODEL" \
  --speculative-algorithm EAGLE3 \
  --speculative-draft-model-path "$DRAFT" \
  --speculative-eagle-topk 1 \
  --speculative-adaptive \
  --speculative-adaptive-config "$HERE/adaptive.json" \
  --max-running-requests 64
