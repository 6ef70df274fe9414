"""Verification-length policies: one interface, one registry (DESIGN §2).

``make_policy("fixed", k=1)`` or ``make_policy("dspark:max_verify_len=5")`` builds a policy; a
policy is called as ``policy(conf, cost=cost_model)`` on confidences ``[R, γ]`` and returns the
verify lengths ``int64 [R]``.
"""

from policies.base import Policy, StepContext, check_inputs, survival, valid_lengths
from policies.registry import (
    available,
    make_policy,
    parameters,
    parse_spec,
    policy_class,
    register,
    spec_of,
)

__all__ = [
    "Policy",
    "StepContext",
    "available",
    "check_inputs",
    "make_policy",
    "parameters",
    "parse_spec",
    "policy_class",
    "register",
    "spec_of",
    "survival",
    "valid_lengths",
]
