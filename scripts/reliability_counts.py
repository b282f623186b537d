"""Count what the reliability suite (tests/reliability) tries, and optionally run it and count the results.

    .venv/bin/python scripts/reliability_counts.py          # collected cases per category (fast)
    .venv/bin/python scripts/reliability_counts.py --run    # also run them (slow ones included): passed/failed

The categories group test functions; every parametrised case counts once. The hypothesis tests count their
`max_examples` (each example is one generated input). RELIABILITY.md quotes this script's output.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CATEGORIES = {
    "bad inputs: gemini-cmr info": ["test_info_refuses", "test_info_process_exit_status", "test_unreadable_files",
                                    "test_unlistable_folder", "test_chmod_000"],
    "bad inputs: super-resolve": ["test_super_resolve_refuses_and_writes_nothing",
                                  "test_super_resolve_keeps_existing_outputs"],
    "bad inputs: train gemini": ["test_train_gemini_refuses_bad_member", "test_train_gemini_refuses_bad_dataset",
                                 "test_train_gemini_refuses_bad_config", "test_resume_without_checkpoint_is_one_line_error"],
    "bad inputs: app open action": ["test_open_shows_one_error_dialog",
                                    "test_permission_denied_dialog_then_good_study"],
    "absurd sizes (memory bounded)": ["test_absurd_sizes_refused_before_allocating", "test_huge_claim_process_memory",
                                      "test_size_check_accepts_maximally_compressed_files"],
    "untrusted model files": ["test_predictor_and_store_never_unpickle", "test_adapter_load_never_unpickles",
                              "test_super_resolve_model_option_never_unpickles",
                              "test_super_resolve_adapter_option_never_unpickles", "test_config_validation",
                              "test_weights_missing_tensor", "test_truncated_safetensors"],
    "interrupts and crashes": ["test_sigterm_while_writing_outputs_keeps_the_old_folder",
                               "test_interrupted_super_resolve_keeps_the_old_folder",
                               "test_cancel_while_writing_keeps_the_old_folder",
                               "test_signal_while_starting_the_image_writer_waits_for_it", "test_killed_training_resumes",
                               "test_repeated_sigkill_never_corrupts_the_run",
                               "test_state_save_cut_short_keeps_previous_state"],
    "resource limits (memory estimate, CUDA OOM)": ["test_estimate_grows_with_batch_and_phases",
                                                    "test_estimate_covers_the_measured_peak",
                                                    "test_plan_batch_shrinks_then_refuses",
                                                    "test_predict_refuses_before_allocating",
                                                    "test_cuda_oom_during_device_placement_places_on_the_host",
                                                    "test_cuda_oom_retries_with_smaller_batches",
                                                    "test_cuda_oom_falls_back_to_cpu", "test_cpu_oom_is_not_swallowed"],
    "property-based geometry (hypothesis)": ["test_world_index_round_trip", "test_index_maps_compose",
                                             "test_rigid_moves_compose", "test_resample_shift_round_trip",
                                             "test_sr_grid_covers_the_lr_slab", "test_kabsch_recovers_rigid_transforms"],
    "loader fuzzing (hypothesis)": ["test_fuzz_nifti_header", "test_fuzz_nifti_anywhere", "test_fuzz_nifti_gz",
                                    "test_fuzz_dicom_in_folder", "test_fuzz_dicom_zip",
                                    "test_fuzzing_reached_both_outcomes", "test_fuzz_nifti_header_fields",
                                    "test_header_fuzzing_reached_both_outcomes"],
    "bad-input geometry, caps and special files": [
        "test_skew_tolerance", "test_large_slab_loads_with_a_warning_and_caps_can_be_raised",
        "test_pixdim_zero_with_an_sform_uses_the_sform", "test_memory_estimate_refuses_absurd_grids_at_once",
        "test_gzip_bomb_refused_before_decompressing", "test_vox_offset_bomb_never_reaches_nibabel",
        "test_zip_member_bomb_never_decompressed", "test_bombs_at_default_caps_keep_a_real_process_small",
        "test_dicom_caps_are_adjustable", "test_zip_unpack_total_is_capped", "test_bad_cap_value_is_one_line",
        "test_header_claims_refused_in_a_real_process", "test_series_exported_twice_loads_once",
        "test_same_trigger_time_different_images_are_kept", "test_fifo_and_device_links_beside_a_series",
        "test_special_files_refused_in_a_real_process", "test_fifo_swapped_in_after_the_walk_does_not_block",
        "test_1100_nested_folders", "test_nesting_within_the_cap_still_loads", "test_newline_in_file_name_is_escaped",
        "test_escape_sequences_and_undecodable_names", "test_library_chatter_stays_off_stderr_in_a_real_process",
        "test_view_size_is_validated", "test_view_size_parses", "test_real_scanner_data_loads_as_before"],
    # tests/reliability/test_outputs_publish.py
    "publishing the outputs (--out, disk, kills)": [
        "test_out_is_a_symlink_to_a_folder", "test_out_is_a_mount_point", "test_every_move_stays_inside_out",
        "test_a_folder_named_like_an_output_is_refused_before_the_compute", "test_meshes_as_a_file_is_refused",
        "test_a_conflict_appearing_during_the_run_changes_nothing",
        "test_a_failure_at_any_step_of_publishing_puts_everything_back",
        "test_user_files_in_meshes_survive_and_our_stale_meshes_go", "test_out_inside_a_dicom_study_folder_is_refused",
        "test_out_beside_a_nifti_study_is_fine", "test_disk_full_while_writing_is_one_line_and_changes_nothing",
        "test_disk_full_injected_through_the_cli", "test_not_enough_free_space_is_found_before_the_compute",
        "test_read_only_out_is_found_before_the_compute", "test_unwritable_out_injected",
        "test_chmod_555_out_as_a_user", "test_stale_staging_of_dead_processes_is_cleaned",
        "test_sigkill_while_writing_then_the_next_run_cleans_up",
        "test_an_empty_segmentation_still_publishes_every_output"],
    # tests/reliability/test_outputs_batch.py
    "batch naming and resume": [
        "test_resumed_batch_on_another_list_keeps_each_study_in_its_own_folder",
        "test_a_folder_holding_another_study_is_left_alone",
        "test_resume_redoes_a_changed_input_other_options_or_missing_outputs", "test_the_resume_check_compares_the_model",
        "test_batch_warnings_and_implausible_results_reach_the_user",
        "test_output_folder_inside_the_folder_of_studies_is_not_a_study",
        "test_an_unwritable_out_fails_before_any_model_is_loaded"],
    # tests/reliability/test_outputs_warnings.py
    "warnings, plausibility, not available": [
        "test_study_and_result_warnings_go_to_stderr", "test_implausible_values_are_flagged_everywhere",
        "test_single_phase_values_are_not_available_with_the_reason", "test_assess_ranges_and_availability",
        "test_philips_partial_series_warns_and_flags_its_lvef"],
    # tests/reliability/test_outputs_model_config.py
    "model config validation (with the fuzz)": [
        "test_bad_config_values_are_one_line_errors_before_the_compute",
        "test_adapter_unknown_normalisation_names_the_file", "test_shipped_models_and_recipe_exports_load",
        "test_fuzz_model_config", "test_fuzz_reached_both_outcomes", "test_accepted_edits_load_with_the_weights"],
    # tests/reliability/test_outputs_app.py
    "app: signals and the phenotype panel": [
        "test_idle_app_closes_on_signal", "test_scripted_run_exits_promptly_on_sigterm",
        "test_signal_during_a_task_asks_before_cancelling", "test_signal_without_a_task_closes_without_asking",
        "test_panel_single_phase_shows_not_available", "test_panel_implausible_values_are_marked"],
}
#: Test modules with hypothesis tests (their `max_examples` count as inputs).
HYPOTHESIS_MODULES = ("test_fuzz_loaders", "test_properties", "test_inputs_fuzz_headers", "test_outputs_model_config")


def _function(nodeid: str) -> str:
    return re.sub(r"\[.*$", "", nodeid.split("::")[-1])


def collect() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "slow or not slow",
                          "tests/reliability"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in out.splitlines() if "::" in line]


def hypothesis_examples() -> dict[str, int]:
    """max_examples of every hypothesis test (one generated input each)."""
    import importlib

    out = {}
    for mod in (importlib.import_module(f"tests.reliability.{name}") for name in HYPOTHESIS_MODULES):
        for name in dir(mod):
            fn = getattr(mod, name)
            settings = getattr(fn, "_hypothesis_internal_use_settings", None)
            if name.startswith("test_") and settings is not None:
                out[name] = settings.max_examples
    return out


def run() -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "slow or not slow", "tests/reliability",
                        f"--junitxml={xml}"], cwd=REPO, capture_output=True, text=True)
        status = {}
        for case in ET.parse(xml).getroot().iter("testcase"):
            nodeid = f"{case.get('classname').replace('.', '/')}.py::{case.get('name')}"
            kind = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    kind = "failed"
                elif child.tag == "skipped":
                    kind = "skipped"
            status[nodeid] = kind
        return status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="run the suite (slow tests included) and count results")
    args = ap.parse_args()
    ids = collect()
    examples = hypothesis_examples()
    status = run() if args.run else {}
    by_fn = Counter(_function(i) for i in ids)
    known = {fn for fns in CATEGORIES.values() for fn in fns}
    rows = []
    for cat, fns in CATEGORIES.items():
        n_cases = sum(by_fn.get(fn, 0) for fn in fns)
        n_inputs = sum(examples.get(fn, by_fn.get(fn, 0)) for fn in fns)
        res = Counter(v for k, v in status.items() if _function(k) in fns)
        rows.append((cat, n_cases, n_inputs, res))
    other = sorted(set(by_fn) - known)
    print(f"{'category':48s} {'tests':>6s} {'inputs':>7s}  result")
    for cat, n_cases, n_inputs, res in rows:
        result = ", ".join(f"{v} {k}" for k, v in sorted(res.items())) if res else "-"
        print(f"{cat:48s} {n_cases:6d} {n_inputs:7d}  {result}")
    total = Counter(status.values())
    print(f"{'total':48s} {len(ids):6d} {sum(r[2] for r in rows):7d}  "
          + (", ".join(f"{v} {k}" for k, v in sorted(total.items())) if total else "-"))
    if other:
        print("uncategorised tests:", ", ".join(other))
    for nodeid, kind in sorted(status.items()):
        if kind == "failed":
            print("FAILED", nodeid)
    return 1 if total.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
