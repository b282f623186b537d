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
                               "test_cancel_while_writing_keeps_the_old_folder", "test_killed_training_resumes",
                               "test_repeated_sigkill_never_corrupts_the_run",
                               "test_state_save_cut_short_keeps_previous_state"],
    "resource limits (memory estimate, CUDA OOM)": ["test_estimate_grows_with_batch_and_phases",
                                                    "test_estimate_covers_the_measured_peak",
                                                    "test_plan_batch_shrinks_then_refuses",
                                                    "test_predict_refuses_before_allocating",
                                                    "test_cuda_oom_retries_with_smaller_batches",
                                                    "test_cuda_oom_falls_back_to_cpu", "test_cpu_oom_is_not_swallowed"],
    "property-based geometry (hypothesis)": ["test_world_index_round_trip", "test_index_maps_compose",
                                             "test_rigid_moves_compose", "test_resample_shift_round_trip",
                                             "test_sr_grid_covers_the_lr_slab", "test_kabsch_recovers_rigid_transforms"],
    "loader fuzzing (hypothesis)": ["test_fuzz_nifti_header", "test_fuzz_nifti_anywhere", "test_fuzz_nifti_gz",
                                    "test_fuzz_dicom_in_folder", "test_fuzz_dicom_zip",
                                    "test_fuzzing_reached_both_outcomes"],
}


def _function(nodeid: str) -> str:
    return re.sub(r"\[.*$", "", nodeid.split("::")[-1])


def collect() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "slow or not slow",
                          "tests/reliability"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in out.splitlines() if "::" in line]


def hypothesis_examples() -> dict[str, int]:
    """max_examples of every hypothesis test (one generated input each)."""
    from tests.reliability import test_fuzz_loaders as fz
    from tests.reliability import test_properties as pr

    out = {}
    for mod in (fz, pr):
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
