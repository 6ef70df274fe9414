#!/bin/sh
# spectune export for TensorRT-LLM llm_args.py @ fcd3f316: fill the placeholders and run.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
: "${MODEL:?set MODEL to the target model (path or Hugging Face id)}"
: "${DRAFT:?set DRAFT to the draft model or head the deployment speculates with}"
FILLED=$(mktemp "${TMPDIR:-/tmp}/spectune-trtllm.XXXXXX")
sed "s|\$DRAFT|$DRAFT|" "$HERE/speculative_config.yaml" > "$FILLED"
exec trtllm-serve "$MODEL" \
  --backend pytorch \
  --max_batch_size 64 \
  --extra_llm_api_options "$FILLED"
