"""Sample-quality metrics for scoring candidate models: FID-style distances and friends.

Features come from any ``nn.Module`` extractor (the packaged digits nets, Inception-v3 from a
local weights file, or your own); see docs/metrics.md.
"""

from lcsc.metrics.features import (
    DigitsConvFeatureNet,
    DigitsFeatureNet,
    InceptionFeatures,
    digits_features,
    digits_to_model_space,
    inception_features,
)
from lcsc.metrics.frechet import FeatureMoments, FeatureStats, frechet_distance
from lcsc.metrics.reference import (
    compute_features,
    compute_features_and_logits,
    extractor_fingerprint,
    reference_cache_path,
    reference_stats,
    samples_fingerprint,
)
from lcsc.metrics.reference_files import load_images, load_reference, stats_from_npz
from lcsc.metrics.scores import inception_score, kid, precision_recall

__all__ = [
    "DigitsConvFeatureNet",
    "DigitsFeatureNet",
    "FeatureMoments",
    "FeatureStats",
    "InceptionFeatures",
    "compute_features",
    "compute_features_and_logits",
    "digits_features",
    "digits_to_model_space",
    "extractor_fingerprint",
    "frechet_distance",
    "inception_features",
    "inception_score",
    "kid",
    "load_images",
    "load_reference",
    "precision_recall",
    "reference_cache_path",
    "reference_stats",
    "samples_fingerprint",
    "stats_from_npz",
]
