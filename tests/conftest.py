"""Shared fixtures: small workloads built in code, the default models, the shared traces folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from profiles.builtin import load_acceptance, load_cost
from simulator.request import Request

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"


def make_requests(n: int, rate: float, seed: int = 0, domain: str = "chat") -> list[Request]:
    """n Poisson arrivals at ``rate`` req/s with uniform lengths (a fixture, not a model)."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    prompts = rng.integers(16, 2048, n)
    outputs = rng.integers(1, 300, n)
    return [Request(i, float(t[i]), int(prompts[i]), int(outputs[i]), domain) for i in range(n)]


@pytest.fixture(scope="session")
def cost():
    return load_cost("builtin:h100-8b")


@pytest.fixture(scope="session")
def acceptance():
    return load_acceptance("paper:qwen3-8b-dspark")


@pytest.fixture(scope="session")
def traces() -> Path:
    if not TRACES.is_dir():
        pytest.skip("../shared/traces is not beside this checkout")
    return TRACES


# Long tests, skipped by `pytest -m "not slow"` (the fast subset): the engine's end-to-end runs,
# tuning runs, benchmarks, examples and anything replaying a full production trace. Listed here,
# in one place, so that the fast subset is one decision; tests may also mark themselves.
SLOW_MODULES = {
    "tests/engine/test_cli.py", "tests/engine/test_closed_loop.py",
    "tests/engine/test_companion.py", "tests/engine/test_fidelity.py",
    "tests/engine/test_fidelity_models.py", "tests/engine/test_live.py",
    "tests/engine/test_train.py", "tests/policies/test_bench.py", "tests/test_examples.py",
    "tests/runner/cli/test_profile_cli.py",
    # the hostile sweep (331 cases, each a full command) and the README's blocks under a pty and
    # piped; the fast subset keeps a test per cause at its boundary (tests/runner/cli/test_contract)
    "tests/test_hostile.py", "tests/test_readme.py",
    # whole runs on both step paths (compiled vs reference) and kernels vs decide on many batches;
    # the vLLM server manager against stand-in servers in subprocesses
    "tests/simulator/test_compiled.py", "tests/policies/test_kernels.py",
    "tests/engine/test_vllm_serve.py",
}  # fmt: skip
SLOW_TESTS = {
    "test_tune_writes_results_best_yaml_and_plots", "test_plots_and_rate_mode",
    "test_resume_after_kill_loses_no_finished_point", "test_ray_and_local_give_identical_results",
    "test_sts_temperatures_flow_from_calibration_to_best_yaml_and_sglang",
    "test_demo_runs_replay_tune_export_and_prints_the_gain",
    # statistical and end-to-end engine checks (the exact audit, tests/policies/test_audit.py,
    # stays in the fast subset)
    "test_engine_samples_follow_target", "test_greedy_speculative_equals_plain",
    "test_requests_join_and_leave_between_steps", "test_simulator_reproduces_the_committed_records",
    "test_vectorised_equals_the_pseudocode",
    # SGLang's own planner on 1,000+ random batches per export
    "test_sglang_planner_matches_spectunes_simulation_of_the_export",
    # a command in a subprocess each (pipes, FIFOs, a fresh interpreter without torch, a full disk)
    "test_bad_input_exits_2_with_one_line", "test_bad_profile_yaml_exits_2",
    "test_replay_does_not_import_torch", "test_a_piped_trace_loses_no_rows",
    "test_tune_refuses_a_pipe_it_would_have_to_reread",
    "test_stdout_on_a_full_disk_is_one_line_exit_2",
    "test_cli_states_rejected_requests_and_clamps_on_request",
    # whole commands in process: calibration with plots, a tune and its resume, the full audit,
    # an engine recording, replaying a tuned document
    "test_calibrate_writes_yaml_sglang_json_and_png", "test_calibrate_bad_input_exits_2",
    "test_profiles_lists_everything_with_provenance",
    "test_existing_results_need_resume_and_the_same_config",
    "test_audit_all", "test_tiny_engine_recording_is_nontrivial",
    "test_replay_runs_what_was_tuned",
    # statistical power of the losslessness test (the exact checks stay fast)
    "test_test_has_power",
    # the heaviest unit checks (a second or more each under load): engine forwards over several
    # steps, the planners against their pseudocode on large pools, a saturated server, the real
    # traces' spans, recording the tiny engine
    "test_full_verification_reports_a_and_keeps_outcome",
    "test_oracle_drafts_accept_up_to_the_first_wrong_token",
    "test_flattened_variable_lengths_match_sequence_forward",
    "test_fewer_verified_drafts_only_truncate", "test_rises_throughout_is_a_sound_certificate",
    "test_large_pools_equal_the_pseudocode", "test_saturated_queue_grows",
    "test_calibrated_input_keeps_temperature_near_one", "test_real_azure_spans_and_mooncake_spans",
    "test_simulator_reproduces_the_tiny_engine",
    "test_exact_is_claimed_where_sglangs_planner_makes_the_tuned_decisions",
    "test_plugin_is_searched_by_tune_and_handled_by_export",
    "test_uniform_records_replay_fixed_policies_of_the_tiny_engine",
}  # fmt: skip
SLOW_FIXTURES = {"traces"}  # the real traces in ../shared/traces


def pytest_collection_modifyitems(config, items) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        path = Path(str(item.path)).resolve().relative_to(root).as_posix()
        name = getattr(item, "originalname", item.name)
        if (path in SLOW_MODULES or name in SLOW_TESTS
                or SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))):  # fmt: skip
            item.add_marker(pytest.mark.slow)
