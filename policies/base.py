"""The policy interface (DESIGN §2, "The decode step").

A policy decides, for each request r of the running batch, how many of its γ draft tokens the
target verifies this step: ``ℓ[r] ∈ {0..γ}``. It is a frozen dataclass whose fields are its
hyperparameters, with a pure decision function. Subclasses implement :meth:`Policy.decide`
(trusted inputs, the simulator's hot path); calling the policy validates the inputs first.

Class attributes every policy declares:

- ``name``: the registry name (the only identifier; set by ``@register``);
- ``lossless``: True if the output distribution equals the target's, False if not, None if the
  question does not apply (oracles that read realized outcomes);
- ``reads``: what it looks at, a subset of ``{"conf", "lagged", "realized", "cost", "history"}``;
- ``summary``: one line for ``spectune policies``;
- ``prefix_scheduler``: True for DSpark-style prefix schedulers (ℓ from prefix survival under
  the step's cost), which engines' DSpark schedulers run; exports read it.

What else a policy knows about itself lives on it too: a hyperparameter's search space is its
field's metadata (:func:`searched`; ``runner/search.py`` reads it, so a third-party policy is
tuned like a builtin), and :meth:`Policy.verify_bounds` and :meth:`Policy.batch_table` say what
engines' length bounds and batch-size tables it amounts to (the scheduler document and exports).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from profiles.errors import InputError

READS = frozenset({"conf", "lagged", "realized", "cost", "history"})
ByGamma = Callable[[int], Any]  # a value that depends on γ (the drafts per step)


def gamma_bound(g: int) -> int:
    """A search bound of γ itself."""
    return g


def drafts(g: int) -> tuple[int, ...]:
    """Every draft count 1..γ (a coarse grid)."""
    return tuple(range(1, g + 1))


def verify_caps(g: int) -> tuple[int, ...]:
    """Per-request verify caps tried first: 3, 5 and 0 (= γ), those below γ."""
    return tuple(v for v in (3, 5, 0) if v < g)


@dataclass(frozen=True)
class Search:
    """How tuning searches one hyperparameter: a coarse ``grid``, refined between ``lo`` and
    ``hi`` (None: categorical, the grid only); each may be a function of γ."""

    grid: tuple | ByGamma  # coarse values, increasing (or categories)
    lo: float | ByGamma | None = None  # refinement bounds
    hi: float | ByGamma | None = None
    log: bool = False  # refine in log space (capacities)
    zero_is_gamma: bool = False  # 0 spells γ (a cap): a value >= γ is written 0

    def at(self, g: int) -> tuple[tuple, float | None, float | None]:
        """(grid, lo, hi) for γ = ``g``."""
        grid, lo, hi = (v(g) if callable(v) else v for v in (self.grid, self.lo, self.hi))
        return tuple(grid), lo, hi


def searched(default: Any, grid: tuple | ByGamma, lo: float | ByGamma | None = None,
             hi: float | ByGamma | None = None, *, log: bool = False,
             zero_is_gamma: bool = False) -> Any:  # fmt: skip
    """A hyperparameter field that tuning searches (``x: int = searched(1, grid=(1, 2, 4))``)."""
    return field(default=default, metadata={"search": Search(grid, lo, hi, log, zero_is_gamma)})


def verify_cap() -> Any:
    """The ``max_verify_len`` field (default 0 = γ) with its search space."""
    return searched(0, verify_caps, 1, gamma_bound, zero_is_gamma=True)


@dataclass
class StepContext:
    """What a policy may see besides the current confidences. The simulator reuses one object.

    Arrays are aligned with the rows of ``conf`` (R requests).
    """

    cost: Any = None  # profiles.CostModel (or anything with .sps(requests, tokens_array))
    step: int = 0  # decode step index of the server
    lagged: np.ndarray | None = None  # [lag, R, γ] confidences 1..lag steps ago (index 0 = oldest)
    lagged_known: np.ndarray | None = None  # [lag, R] bool: the request had drafts at that step
    accepted: np.ndarray | None = None  # [R] int realized accepted count A (oracles only)
    accepted_total: np.ndarray | None = None  # [R] int drafts accepted so far per request
    verified_total: np.ndarray | None = None  # [R] int drafts verified so far per request
    kv_tokens: int | None = None  # KV tokens attention reads (cost's context_basis); None: unknown
    prefill_tokens: int = 0  # prompt tokens co-batched into this step (chunked prefill)
    rate: float = 0.0  # running output tokens per second of decode work, prefill excluded (0: none)
    rng: np.random.Generator | None = None  # the only source of randomness a policy may use


@dataclass(frozen=True)
class Policy:
    """Base class of verification-length policies. Subclass, add fields, implement ``decide``."""

    name: ClassVar[str] = ""
    lossless: ClassVar[bool | None] = True
    reads: ClassVar[frozenset[str]] = frozenset({"conf"})
    summary: ClassVar[str] = ""
    prefix_scheduler: ClassVar[bool] = False
    # fields that count drafts per request, each at most γ (names a policy lacks are skipped)
    draft_lengths: ClassVar[tuple[str, ...]] = ("k", "min_verify_len", "max_verify_len")

    @classmethod
    def search_space(cls) -> dict[str, Search]:
        """The searched hyperparameters, in field order (their :func:`searched` metadata)."""
        return {f.name: f.metadata["search"] for f in fields(cls) if "search" in f.metadata}

    def verify_bounds(self, gamma: int) -> dict[str, Any]:
        """The length bounds engines speak of (``verify`` of the scheduler document):
        ``lag_steps``, ``min_verify_len``, ``max_verify_len`` (0 = γ), ``survival_eps``; a
        policy without such fields has 0 for each."""
        return {
            "lag_steps": int(getattr(self, "lag", 0)),
            "min_verify_len": int(getattr(self, "min_verify_len", 0)),
            "max_verify_len": int(getattr(self, "max_verify_len", 0)),
            "survival_eps": float(getattr(self, "survival_eps", 0.0)),
        }

    def static_drafts(self, gamma: int) -> int | None:
        """Drafts every request verifies at every step whatever the batch, if that is all the
        policy does (a static draft length); else None."""
        return None

    def batch_table(self, cap: int, gamma: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """(sizes, ks): drafts per request by batch size up to ``cap`` (``ks[i]`` for batches
        of at most ``sizes[i]``) if the policy reads nothing but the batch size; else None."""
        return None

    def draft_tokens(self, gamma: int) -> int:
        """Drafts per request this policy needs the drafter to produce each step (γ unless it
        never verifies more; the cost model prices the draft pass by it, see
        ``CostModel.draft_scale``)."""
        return gamma

    def kernel(self, gamma: int) -> tuple[str, tuple[float, ...]] | None:
        """The compiled decision that reproduces :meth:`decide` on the simulator's fast path:
        a name in ``policies.kernels.KERNELS`` and its float parameters; None (the default,
        e.g. plugins) runs :meth:`decide` on the reference path."""
        return None

    def decide(self, conf: np.ndarray, valid: np.ndarray | None, ctx: StepContext) -> np.ndarray:
        """Verify lengths ``int64 [R]`` for confidences ``conf [R, γ]`` (trusted inputs).

        ``valid`` is None (all drafts exist) or a bool mask ``[R, γ]``; the result must not
        reach past the first invalid position of a row.
        """
        raise NotImplementedError

    def __call__(
        self,
        conf: np.ndarray,
        *,
        cost: Any = None,
        valid: np.ndarray | None = None,
        lagged: np.ndarray | None = None,
        lagged_known: np.ndarray | None = None,
        accepted: np.ndarray | None = None,
        accepted_total: np.ndarray | None = None,
        verified_total: np.ndarray | None = None,
        step: int = 0,
        kv_tokens: int | None = None,
        prefill_tokens: int = 0,
        rate: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Validate the inputs, then :meth:`decide`. Returns ``int64 [R]``."""
        conf, valid = check_inputs(conf, valid)
        r = conf.shape[0]
        if "cost" in self.reads and cost is None:
            raise InputError(f"policy {self.name!r} needs a cost model (cost=...)")
        if "realized" in self.reads and accepted is None:
            raise InputError(f"policy {self.name!r} reads realized outcomes (accepted=...)")
        if lagged is not None:
            lagged = np.asarray(lagged, dtype=np.float64)
            if lagged.ndim != 3 or lagged.shape[1:] != conf.shape:
                raise InputError(f"lagged confidences must be [lag, {r}, {conf.shape[1]}]")
            _check_probabilities(lagged, "lagged confidences")
            if lagged_known is None:
                lagged_known = np.ones(lagged.shape[:2], dtype=bool)
        ctx = StepContext(
            cost=cost,
            step=step,
            lagged=lagged,
            lagged_known=lagged_known,
            accepted=None if accepted is None else np.asarray(accepted, dtype=np.int64),
            accepted_total=accepted_total,
            verified_total=verified_total,
            kv_tokens=None if kv_tokens is None else int(kv_tokens),
            prefill_tokens=int(prefill_tokens),
            rate=float(rate),
            rng=rng if rng is not None else np.random.default_rng(0),
        )
        out = self.decide(conf, valid, ctx)
        return np.asarray(out, dtype=np.int64)

    @property
    def spec(self) -> str:
        """This policy as a CLI spec string, ``name:key=value,...`` (parsable by make_policy)."""
        from policies.registry import spec_of

        return spec_of(self)


def _check_probabilities(a: np.ndarray, what: str) -> None:
    if not np.isfinite(a).all():
        raise InputError(f"{what} contain NaN or infinity")
    if a.size and (a.min() < 0.0 or a.max() > 1.0):
        raise InputError(f"{what} must lie in [0, 1], got [{a.min():.4g}, {a.max():.4g}]")


def check_inputs(conf: Any, valid: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a confidence array ``[R, γ]`` and optional valid mask; return them as arrays."""
    conf = np.asarray(conf, dtype=np.float64)
    if conf.ndim != 2:
        raise InputError(f"confidences must be a 2-D array [R, gamma], got shape {conf.shape}")
    _check_probabilities(conf, "confidences")
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != conf.shape:
            raise InputError(
                f"valid mask shape {valid.shape} differs from confidences {conf.shape}"
            )
    return conf, valid


def valid_lengths(valid: np.ndarray | None, r: int, gamma: int) -> np.ndarray:
    """Per-row count of leading valid drafts ``int64 [R]`` (γ everywhere when ``valid`` is None)."""
    if valid is None:
        return np.full(r, gamma, dtype=np.int64)
    return np.cumprod(valid, axis=1).sum(axis=1).astype(np.int64)


def survival(conf: np.ndarray) -> np.ndarray:
    """Prefix survival ``a[r, j] = Π_{i≤j} c[r, i]``, shape ``[R, γ]``."""
    return np.cumprod(conf, axis=1)
