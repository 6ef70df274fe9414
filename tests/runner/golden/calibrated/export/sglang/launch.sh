#!/bin/sh
# spectune export for sglang 0.5.23: fill the placeholders and run.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
: "${MODEL:?set MODEL to the target model (path or Hugging Face id)}"
: "${DRAFT:?set DRAFT to the draft model or head the deployment speculates with}"
export SGLANG_RAGGED_VERIFY_MODE=static
exec python -m sglang.launch_server \
  --model-path "$MODEL" \
  --speculative-algorithm DSPARK \
  --speculative-draft-model-path "$DRAFT" \
  --speculative-dspark-block-size 3 \
  --max-running-requests 64
