"""Small exact scenarios for the losslessness auditor (policies/audit.py).

A scenario is one decode step of a tiny batch, small enough to enumerate every outcome: each
request has a vocabulary of two or three tokens, a *target* and a *draft* distribution per
position that depend on the previous token (Markov), and a *confidence head* whose score at
position k depends on the previously sampled draft token ``x[k-1]`` — the property that makes a
retrospective scheduler lossy (paper Appendix A). A scenario also fixes the cost table and
whatever else a policy may read before the step: lagged confidences, per-request history and a
valid mask. None of them depends on the step's sampled drafts.

Shapes (V vocabulary size, γ drafts, P ≥ γ+1 target positions; row V of the middle axis is
"no previous token", used at the first position of the step):
``target [P, V+1, V]``, ``draft [γ, V+1, V]``, ``conf [γ, V+1]``.

Builtin scenarios (``SCENARIOS``):

- ``paper-appendix-a``: the paper's counterexample (R=1, γ=2, target (0.7, 0.3), draft
  (0.5, 0.5), c1 = 0.8, c2 = 0.9 after A and 0 after B, SPS 1.0/0.5/0.45). A retrospective
  scheduler outputs (0.85, 0.15);
- ``jagged-pair``: two requests on a jagged 1D SPS table where the early stop and the global
  argmax differ;
- ``additive-trio``: three requests on an additive (bias + α(bs) + θ(M)) table with a cliff;
- ``lagged-pair``: two requests with γ=3, lagged confidences (one request stale two steps ago),
  history and a valid mask that shortens one request;
- ``padded-trio``: ``additive-trio`` on a cost that pads to the longest request, with lagged
  confidences (one request stale);
- ``markov-deep``: one request, γ=3, three tokens, first three output tokens compared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from profiles.cost import CostModel
from profiles.errors import InputError


@dataclass(frozen=True, eq=False)
class ScenarioRequest:
    """One request's tiny language for one step (see the module docstring for shapes)."""

    target: np.ndarray  # [P, V+1, V] p_t(y_k | y_{k-1}); row V: first position of the step
    draft: np.ndarray  # [γ, V+1, V] p_d(x_k | x_{k-1})
    conf: np.ndarray  # [γ, V+1] confidence c_k given the previous draft token x_{k-1}


@dataclass(frozen=True, eq=False)
class Scenario:
    """One exactly enumerable decode step: requests, cost and pre-step information."""

    name: str
    summary: str
    vocab: tuple[str, ...]  # one short label per token
    requests: tuple[ScenarioRequest, ...]
    cost: CostModel
    tokens: int = 2  # leading output tokens per request whose joint distribution is compared
    valid: np.ndarray | None = None  # [R, γ] drafts that exist (known before the step)
    lagged: np.ndarray | None = None  # [L, R, γ] confidences 1..L steps ago (index 0 = oldest)
    lagged_known: np.ndarray | None = None  # [L, R] the request drafted at that step
    accepted_total: np.ndarray | None = None  # [R] drafts accepted before this step
    verified_total: np.ndarray | None = None  # [R] drafts verified before this step

    @property
    def gamma(self) -> int:
        return self.requests[0].draft.shape[0]


def request(
    vocab: int,
    target: Sequence,
    draft: Sequence,
    conf: Sequence,
) -> ScenarioRequest:
    """Build a :class:`ScenarioRequest` from per-position specs.

    Position 0 takes one distribution (target, draft) or one number (conf); later positions take
    one row per previous token (``[V][V]``, or ``[V]`` for conf). The target needs γ+1 positions
    (the bonus token); fewer are padded by repeating the last one.
    """
    gamma = len(draft)
    if len(conf) != gamma:
        raise InputError(f"scenario request: {len(conf)} confidence rows for {gamma} drafts")
    t = [_rows(spec, vocab, k) for k, spec in enumerate(target)]
    t += [t[-1]] * max(0, gamma + 1 - len(t))
    d = [_rows(spec, vocab, k) for k, spec in enumerate(draft)]
    c = [_conf_row(spec, vocab, k) for k, spec in enumerate(conf)]
    return ScenarioRequest(np.stack(t), np.stack(d), np.stack(c))


def _rows(spec: Sequence, vocab: int, k: int) -> np.ndarray:
    """``[V+1, V]`` conditional distribution rows for position k."""
    spec = np.asarray(spec, dtype=np.float64)
    out = np.full((vocab + 1, vocab), 1.0 / vocab)
    if k == 0:
        out[:] = spec  # only the start row is read; the rest serves as padding for later k
    else:
        out[:vocab] = spec
    if np.any(out < 0) or not np.allclose(out.sum(axis=1), 1.0):
        raise InputError(f"scenario request: position {k + 1} rows are not distributions")
    return out


def _conf_row(spec: float | Sequence, vocab: int, k: int) -> np.ndarray:
    out = np.full(vocab + 1, 0.5)
    if k == 0:
        out[vocab] = float(spec)  # type: ignore[arg-type]
    else:
        out[:vocab] = np.asarray(spec, dtype=np.float64)
    return out


# -- the builtin scenarios ------------------------------------------------------------------


def paper_appendix_a() -> Scenario:
    req = request(
        2,
        target=[(0.7, 0.3), [(0.6, 0.4), (0.2, 0.8)], [(0.5, 0.5), (0.5, 0.5)]],
        draft=[(0.5, 0.5), [(0.5, 0.5), (0.5, 0.5)]],
        conf=[0.8, (0.9, 0.0)],
    )
    cost = CostModel.from_sps_table([1, 2, 3], [1.0, 0.5, 0.45], source="paper Appendix A")
    return Scenario(
        "paper-appendix-a",
        "paper Appendix A: R=1, gamma=2, c2 depends on x1, SPS 1.0/0.5/0.45",
        ("A", "B"),
        (req,),
        cost,
    )


def jagged_pair() -> Scenario:
    r0 = request(
        2,
        target=[(0.7, 0.3), [(0.6, 0.4), (0.3, 0.7)], [(0.5, 0.5), (0.8, 0.2)]],
        draft=[(0.5, 0.5), [(0.7, 0.3), (0.4, 0.6)]],
        conf=[0.8, (0.9, 0.1)],
    )
    r1 = request(
        2,
        target=[(0.2, 0.8), [(0.5, 0.5), (0.1, 0.9)], [(0.3, 0.7), (0.6, 0.4)]],
        draft=[(0.4, 0.6), [(0.5, 0.5), (0.2, 0.8)]],
        conf=[0.75, (0.2, 0.95)],
    )
    cost = CostModel.from_sps_table(
        [2, 3, 4, 5, 6], [1.0, 0.9, 0.6, 0.58, 0.57], source="analytic: jagged test table"
    )
    return Scenario(
        "jagged-pair",
        "R=2, gamma=2, jagged 1D SPS: a local drop then a plateau",
        ("A", "B"),
        (r0, r1),
        cost,
    )


def additive_trio() -> Scenario:
    reqs = (
        request(2, [(0.6, 0.4)], [(0.5, 0.5), [(0.6, 0.4), (0.3, 0.7)]], [0.9, (0.85, 0.05)]),
        request(2, [(0.3, 0.7)], [(0.4, 0.6), [(0.5, 0.5), (0.5, 0.5)]], [0.7, (0.1, 0.9)]),
        request(
            2,
            [(0.5, 0.5), [(0.9, 0.1), (0.2, 0.8)]],
            [(0.5, 0.5), [(0.8, 0.2), (0.5, 0.5)]],
            [0.95, (0.9, 0.3)],
        ),
    )
    cost = CostModel.additive(
        bias_seconds=0.5,
        bs_probes=[1, 4],
        alpha_seconds=[0.05, 0.2],
        m_probes=[3, 4, 5, 6, 7, 8, 9],
        theta_seconds=[0.3, 0.32, 0.7, 0.8, 0.9, 1.0, 1.2],
        source="analytic: additive test table with a cliff at M=5",
    )
    return Scenario(
        "additive-trio",
        "R=3, gamma=2, additive cost (bias + alpha(bs) + theta(M)) with a cliff",
        ("A", "B"),
        reqs,
        cost,
    )


def padded_trio() -> Scenario:
    """``additive-trio``'s requests on an engine that pads to the longest request (padding
    and ragged-step terms, as the CPU engine's profile), with lagged confidences: the true-cost
    ranked path of ``dspark`` and the capped capacity of ``dspark_lagged`` (policies/padded.py)."""
    base = additive_trio()
    cost = replace(
        base.cost, padding_s=0.02, ragged_s=0.02, source="analytic: additive + padding test table"
    )
    lagged = np.array([[[0.9, 0.2], [0.6, 0.6], [0.5, 0.5]], [[0.5, 0.5], [0.9, 0.8], [0.7, 0.1]]])
    return Scenario(
        "padded-trio",
        "R=3, gamma=2, additive cost with padding to the longest request, lagged confidences",
        base.vocab,
        base.requests,
        cost,
        lagged=lagged,
        lagged_known=np.array([[True, False, True], [True, True, True]]),
    )


def lagged_pair() -> Scenario:
    r0 = request(
        2,
        target=[(0.7, 0.3), [(0.6, 0.4), (0.3, 0.7)], [(0.8, 0.2), (0.4, 0.6)]],
        draft=[(0.6, 0.4), [(0.5, 0.5), (0.4, 0.6)], [(0.7, 0.3), (0.5, 0.5)]],
        conf=[0.9, (0.85, 0.2), (0.9, 0.3)],
    )
    r1 = request(
        2,
        target=[(0.4, 0.6), [(0.5, 0.5), (0.2, 0.8)], [(0.6, 0.4), (0.1, 0.9)]],
        draft=[(0.5, 0.5), [(0.3, 0.7), (0.3, 0.7)], [(0.5, 0.5), (0.5, 0.5)]],
        conf=[0.85, (0.3, 0.9), (0.5, 0.5)],
    )
    cost = CostModel.from_sps_table(
        [2, 3, 4, 5, 6, 7, 8],
        [1.0, 0.95, 0.7, 0.679, 0.6, 0.5, 0.495],
        source="analytic: jagged test table",
    )
    lagged = np.array(
        [
            [[0.9, 0.8, 0.5], [0.5, 0.5, 0.5]],  # two steps ago (request 1 was not running)
            [[0.6, 0.5, 0.4], [0.95, 0.9, 0.9]],  # one step ago
        ]
    )
    return Scenario(
        "lagged-pair",
        "R=2, gamma=3, lagged confidences (request 1 stale at lag 2), history, valid mask",
        ("A", "B"),
        (r0, r1),
        cost,
        valid=np.array([[True, True, True], [True, True, False]]),
        lagged=lagged,
        lagged_known=np.array([[True, False], [True, True]]),
        accepted_total=np.array([9, 1]),
        verified_total=np.array([12, 4]),
    )


def markov_deep() -> Scenario:
    rows_t = [(0.6, 0.3, 0.1), (0.2, 0.5, 0.3), (0.1, 0.1, 0.8)]
    rows_d = [(0.4, 0.4, 0.2), (0.3, 0.3, 0.4), (0.2, 0.2, 0.6)]
    req = request(
        3,
        target=[(0.5, 0.3, 0.2), rows_t, rows_t[::-1], rows_t],
        draft=[(0.4, 0.4, 0.2), rows_d, rows_d[::-1]],
        conf=[0.9, (0.95, 0.5, 0.05), (0.9, 0.1, 0.6)],
    )
    cost = CostModel.from_sps_table(
        [1, 2, 3, 4], [1.0, 0.8, 0.5, 0.48], source="analytic: jagged test table"
    )
    return Scenario(
        "markov-deep",
        "R=1, gamma=3, three tokens, confidences strongly Markov; first 3 tokens compared",
        ("A", "B", "C"),
        (req,),
        cost,
        tokens=3,
    )


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "paper-appendix-a": paper_appendix_a,
    "jagged-pair": jagged_pair,
    "additive-trio": additive_trio,
    "lagged-pair": lagged_pair,
    "padded-trio": padded_trio,
    "markov-deep": markov_deep,
}


def scenario(name: str) -> Scenario:
    """A builtin scenario by name (InputError naming the known ones otherwise)."""
    if name not in SCENARIOS:
        raise InputError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    return SCENARIOS[name]()
