"""Sample quality measures: Fréchet distances over feature extractors (the digits CNN, Inception-v3 for
FID, DINOv2 for FD-DINOv2), streaming float64 feature statistics, the sliced Wasserstein distance for 2-D points, the
Inception Score, Kernel Inception Distance and improved precision/recall, and the 1-nearest-neighbour two-sample test."""

from .digits_net import DigitsFeatureNet, load_digits_feature_net
from .dinov2 import DinoV2Features
from .features import FEATURE_EXTRACTORS, Coordinates2D, FeatureExtractor, get_feature_extractor
from .frechet import FeatureStats, ReferenceStats, frechet_distance, frechet_distance_from_stats
from .inception import InceptionFeatures
from .inception_score import inception_score
from .kernel_distance import kernel_distance
from .one_nn import one_nn_accuracies, one_nn_accuracy
from .precision_recall import precision_recall
from .swd import sliced_wasserstein

__all__ = [
    "FEATURE_EXTRACTORS",
    "Coordinates2D",
    "DigitsFeatureNet",
    "DinoV2Features",
    "FeatureExtractor",
    "FeatureStats",
    "InceptionFeatures",
    "ReferenceStats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "get_feature_extractor",
    "inception_score",
    "kernel_distance",
    "load_digits_feature_net",
    "one_nn_accuracies",
    "one_nn_accuracy",
    "precision_recall",
    "sliced_wasserstein",
]
