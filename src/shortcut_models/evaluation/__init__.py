"""Evaluation: metrics of generated samples at several step counts (``shortcut eval``), and the same
metrics during training (:class:`TrainingEvaluator`, which the trainer calls)."""

from .at_steps import evaluate_images, evaluate_toy, format_table, write_results
from .during_training import TrainingEvaluator
from .image_metrics import (
    METRICS,
    SET_METRICS,
    ImageMetric,
    build_metric,
    default_metric,
    digits_metric,
    dinov2_extractor,
    dinov2_metric,
    feature_extractor,
    feature_stats,
    fid_extractor,
    fid_metric,
    folder_feature_stats,
    load_reference_stats,
    metric_key,
    nn1_measures,
    reduce_feature_stats,
)
from .points import evaluate_points
from .reference_stats import ConvertedStats, convert_reference_stats

__all__ = [
    "METRICS",
    "SET_METRICS",
    "ConvertedStats",
    "convert_reference_stats",
    "ImageMetric",
    "TrainingEvaluator",
    "build_metric",
    "default_metric",
    "digits_metric",
    "dinov2_extractor",
    "dinov2_metric",
    "feature_extractor",
    "evaluate_images",
    "evaluate_points",
    "evaluate_toy",
    "feature_stats",
    "fid_extractor",
    "fid_metric",
    "folder_feature_stats",
    "load_reference_stats",
    "format_table",
    "metric_key",
    "nn1_measures",
    "reduce_feature_stats",
    "write_results",
]
