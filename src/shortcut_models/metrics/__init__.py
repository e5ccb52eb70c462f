"""Sample quality measures: Fréchet distances over feature extractors (the digits CNN, Inception-v3 for
FID), streaming float64 feature statistics, and the sliced Wasserstein distance for 2-D points."""

from .digits_net import DigitsFeatureNet, load_digits_feature_net
from .features import FEATURE_EXTRACTORS, Coordinates2D, FeatureExtractor, get_feature_extractor
from .frechet import FeatureStats, ReferenceStats, frechet_distance, frechet_distance_from_stats
from .inception import InceptionFeatures
from .precision_recall import precision_recall
from .swd import sliced_wasserstein

__all__ = [
    "FEATURE_EXTRACTORS",
    "Coordinates2D",
    "DigitsFeatureNet",
    "FeatureExtractor",
    "FeatureStats",
    "InceptionFeatures",
    "ReferenceStats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "precision_recall",
    "get_feature_extractor",
    "load_digits_feature_net",
    "sliced_wasserstein",
]
