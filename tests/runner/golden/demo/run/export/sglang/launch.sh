#!/bin/sh
# spectune export for sglang 0.5.23: fill the placeholders and run.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
: "${MODEL:?set MODEL to the target model (path or Hugging Face id)}"
: "${DRAFT:?set DRAFT to the draft model or head the deployment speculates with}"
export SGLANG_RAGGED_VERIFY_MODE=compact
export SGLANG_DSPARK_CONFIDENCE_RELAY_LAG_STEPS=2
exec python -m sglang.launch_server \
  --model-path "$MODEL" \
  --speculative-algorithm DSPARK \
  --speculative-draft-model-path "$DRAFT" \
  --speculative-dspark-block-size 7 \
  --speculative-dspark-sps-table-path "$HERE/sps_table.json" \
  --speculative-dspark-confidence-sts-path "$HERE/sts.json" \
  --max-running-requests 64
