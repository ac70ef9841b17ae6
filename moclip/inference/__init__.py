"""Inference with a trained bundle (evaluation and labelling):

- ``meta``: ``BundleMeta``, the typed ``bundle.json`` (constructor arguments of every model, settings, metrics), and
  ``read_meta`` (``bundle.json`` alone, no weights);
- ``predictor``: ``Predictor``, a bundle loaded once, its models rebuilt on a device, scoring every method;
- ``features``: the models' inputs (``Inputs``) and the frozen features the heads see (training shares them);
- ``text``: the dataset's CLIP text tower, for zero-shot class embeddings;
- ``zero_shot``: ``ZeroShotModel``, CLIP zero-shot over a vocabulary, labelling without a trained model.

``Labeller``: what labelling takes, either of the two.
"""

from moclip.inference.features import Inputs, fused_features, mv_features, mv_missing
from moclip.inference.meta import CALIBRATED, BundleMeta, read_meta
from moclip.inference.predictor import Predictor, method_scores
from moclip.inference.zero_shot import ZeroShotModel

Labeller = Predictor | ZeroShotModel

__all__ = ["CALIBRATED", "BundleMeta", "Inputs", "Labeller", "Predictor", "ZeroShotModel", "fused_features",
           "method_scores", "mv_features", "mv_missing", "read_meta"]
