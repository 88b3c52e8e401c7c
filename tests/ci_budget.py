"""The default suite's time budget (CI: 2 CPU cores, under 15 minutes).

Each test below is a second case of an invariant the default suite already proves with a
kept representative (named beside it), or a long end-to-end probe. They get the ``slow``
mark at collection and still run with ``make test-all``. Measured with
``pytest -m "not slow" --durations=0`` (2026-11-30): the default suite took 1385 s in CI
before this list; on a loaded CPU (3295 s in all) these tests took 1215 s of it (37%).
2026-12-01: 273 tests took 925 s in CI (15:25), so two more cases went here (about 30 s).
2026-12-01 (later): 274 tests took 940 s on a slower day of this CPU, so two more (about 33 s).
"""

import pytest

# node id -> the default-suite test that keeps proving the same thing
DEFAULT_SUITE_REPRESENTATIVE = {
    "tests/meta/test_maml.py::test_second_order_meta_gradient_matches_unrolled_reference_float64":
        "test_maml.py::test_second_order_matches_finite_differences_in_float64 (same f64 "
        "setting, finite differences) and test_hvp.py::...[maml_all]",
    "tests/meta/test_maml.py::test_zero_inner_steps_first_and_second_order_equal_plain_gradient":
        "test_maml.py::test_first_order_is_query_gradient_at_adapted_params_and_differs_from_second",
    "tests/meta/test_maml.py::test_task_chunks_equal_all_tasks_at_once":
        "test_maml.py::test_task_chunks_equal_all_tasks_at_once_float64",
    "tests/meta/test_hvp.py::test_hvp_meta_gradient_equals_autodiff_float64[metasgd_all]":
        "test_hvp.py::test_hvp_meta_gradient_equals_autodiff_float64[maml_all]",
    "tests/meta/test_hvp.py::test_hvp_meta_gradient_equals_autodiff_float64[mamlpp_msl]":
        "test_hvp.py::test_hvp_meta_gradient_equals_autodiff_float64[maml_all]",
    "tests/meta/test_hvp.py::test_hvp_meta_gradient_equals_autodiff_float64[protomaml_top1]":
        "test_hvp.py::test_hvp_meta_gradient_equals_autodiff_float64[maml_all]",
    "tests/parallel/test_parallel.py::test_sharded_meta_steps_match_single_device[shape0-fsdp-False]":
        "test_parallel.py::test_sharded_meta_steps_match_single_device[shape3-fsdp-True]",
    "tests/parallel/test_parallel.py::test_sharded_meta_steps_match_single_device[shape2-tensor-True]":
        "test_parallel.py::test_sharded_meta_steps_match_single_device[shape1-tensor-False]",
    "tests/parallel/test_parallel.py::test_task_chunks_on_a_sharded_task_axis_match_single_device":
        "test_parallel.py::test_meta_gradients_match_single_device and "
        "test_maml.py::test_task_chunks_equal_all_tasks_at_once_float64",
    "tests/meta/test_learners.py::test_learner_meta_trains_above_chance_on_unseen_tasks[fomaml]":
        "test_learners.py::...[reptile] (first order) and [anil]",
    "tests/meta/test_learners.py::test_learner_meta_trains_above_chance_on_unseen_tasks[matchingnet]":
        "test_learners.py::...[protonet]",
    "tests/meta/test_learners.py::test_learner_meta_trains_above_chance_on_unseen_tasks[relationnet]":
        "test_learners.py::...[protonet]",
    "tests/meta/test_learners.py::test_task_chunks_equal_all_tasks_for_every_kind_of_meta_gradient[mamlpp-extra2]":
        "test_learners.py::...[reptile-extra0], [protonet-extra1]",
    "tests/meta/test_learners.py::test_reptile_one_step_moves_the_init_along_the_task_training_gradient[False]":
        "test_learners.py::...[True]",
    "tests/run/test_evaluate.py::test_meta_learned_with_cached_bottom_equals_direct_evaluation[adapt0]":
        "test_evaluate.py::...[adapt2]",
    "tests/run/test_evaluate.py::test_meta_learned_with_cached_bottom_equals_direct_evaluation[adapt1]":
        "test_evaluate.py::test_pretrained_finetune_is_the_same_inner_loop_from_the_pretrained_init "
        "(the same head-only inner loop over a cached bottom == the direct evaluation)",
    "tests/parallel/test_parallel.py::test_compiled_step_uses_declared_shardings[shape1-fsdp]":
        "test_parallel.py::...[shape0-tensor] (compiled in/out shardings == declared) and "
        "test_parallel.py::test_sharded_meta_steps_match_single_device[shape3-fsdp-True]",
    "tests/meta/test_metric_learners.py::test_metric_learners_ignore_padding_rows[matchingnet]":
        "test_metric_learners.py::...[protonet]",
    "tests/meta/test_metric_learners.py::test_metric_learners_ignore_padding_rows[relationnet]":
        "test_metric_learners.py::...[protonet]",
    "tests/test_fewshot.py::test_classifier_from_run_and_export_equal_eval_on_the_same_episodes[matchingnet]":
        "test_fewshot.py::...[metasgd], [relationnet], [protonet]",
    "tests/run/test_faults.py::test_nan_advice_works_with_resume_and_metrics_stay_json":
        "test_train.py::test_nan_stops_and_keeps_last_good_checkpoint",
    "tests/run/test_faults.py::test_best_checkpoint_is_saved_when_meta_val_improves":
        "test_train.py::test_resume_is_bit_identical (checkpoints) ",
    "tests/meta/test_maml.py::test_meta_step_compiles_once_over_many_steps":
        "test_train.py::test_run_dir_contents_and_single_compile (one XLA program for a whole "
        "run through the trainer)",
    "tests/meta/test_learners.py::test_metasgd_row_view_gathers_per_row_rates":
        "test_maml.py::test_embedding_row_view_equals_full_table (the row view == the full "
        "table, both orders) and test_learners.py::test_metasgd_and_mamlpp_with_all_rates_alpha_equal_maml",
    "tests/meta/test_learning.py::test_maml_sinusoid_beats_pretrained_by_regression_baseline":
        "test_learners.py::test_learner_meta_trains_above_chance_on_unseen_tasks",
    "tests/meta/test_learning.py::test_meta_training_a_tiny_bert_raises_query_accuracy_well_above_chance":
        "test_learners.py::test_learner_meta_trains_above_chance_on_unseen_tasks",
}


def mark_slow_for_budget(items) -> None:
    """Give the listed tests the ``slow`` mark (called from conftest's collection hook)."""
    for item in items:
        if item.nodeid in DEFAULT_SUITE_REPRESENTATIVE:
            item.add_marker(pytest.mark.slow)
