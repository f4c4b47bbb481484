"""gcflow_jax.evaluation: the shared evaluation library (usable on its own).

    from gcflow_jax import evaluation
    scores = evaluation.evaluate(samples, reference, metrics=["fid", "kid"])
    value = evaluation.fid(samples, "cifar10_train_stats.npz")

Command line: ``python -m gcflow_jax.evaluation --help``. Definitions,
protocols and weights: ``docs/evaluation.md``.

Note: the attributes ``fid`` and ``evaluate`` of this package are the
functions, which shadow the submodules of the same name; import from the
submodules with ``from gcflow_jax.evaluation.fid import frechet_distance``.
"""

from gcflow_jax.evaluation.distances import energy_distance
from gcflow_jax.evaluation.distances import exact_w2
from gcflow_jax.evaluation.distances import kl_hist_2d
from gcflow_jax.evaluation.distances import median_bandwidth
from gcflow_jax.evaluation.distances import mmd_rbf
from gcflow_jax.evaluation.distances import sinkhorn_divergence
from gcflow_jax.evaluation.distances import transport_cost
from gcflow_jax.evaluation.evaluate import ALL_METRICS
from gcflow_jax.evaluation.evaluate import compute_reference_stats
from gcflow_jax.evaluation.evaluate import evaluate
from gcflow_jax.evaluation.evaluate import EXTRACTORS
from gcflow_jax.evaluation.evaluate import fid
from gcflow_jax.evaluation.evaluate import IMAGE_METRICS
from gcflow_jax.evaluation.evaluate import inception_score
from gcflow_jax.evaluation.evaluate import kid
from gcflow_jax.evaluation.evaluate import label_shares
from gcflow_jax.evaluation.evaluate import load_reference
from gcflow_jax.evaluation.evaluate import load_stats
from gcflow_jax.evaluation.evaluate import make_extractor
from gcflow_jax.evaluation.evaluate import preprocess_images
from gcflow_jax.evaluation.evaluate import save_stats
from gcflow_jax.evaluation.evaluate import validate_samples
from gcflow_jax.evaluation.evaluate import VECTOR_METRICS
from gcflow_jax.evaluation.fid import frechet_distance
from gcflow_jax.evaluation.fid import gaussian_statistics
from gcflow_jax.evaluation.fid import inception_score_from_logits
from gcflow_jax.evaluation.fid import kid_from_features
from gcflow_jax.evaluation.inception import InceptionV3

__all__ = [
    "ALL_METRICS",
    "EXTRACTORS",
    "IMAGE_METRICS",
    "VECTOR_METRICS",
    "InceptionV3",
    "compute_reference_stats",
    "energy_distance",
    "evaluate",
    "exact_w2",
    "fid",
    "frechet_distance",
    "gaussian_statistics",
    "inception_score",
    "inception_score_from_logits",
    "kid",
    "kid_from_features",
    "kl_hist_2d",
    "label_shares",
    "load_reference",
    "load_stats",
    "make_extractor",
    "median_bandwidth",
    "mmd_rbf",
    "preprocess_images",
    "save_stats",
    "sinkhorn_divergence",
    "transport_cost",
    "validate_samples",
]
