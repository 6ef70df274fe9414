"""A request as every workload yields it (DESIGN §2: requests and workloads)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Request:
    """One inference request of a workload, in arrival order."""

    id: int  # position in the workload (0-based), stable across replays
    arrival_s: float  # arrival time in seconds from the workload's start
    prompt_tokens: int  # prompt length (tokens), >= 1
    output_tokens: int  # tokens to generate, >= 1
    domain: str = "chat"  # acceptance-model domain label (code, chat, math, ...)
