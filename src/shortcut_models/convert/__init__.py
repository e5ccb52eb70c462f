"""Bring models and statistics made by other code into this package's formats.

``jax_checkpoint``: the authors' pretrained JAX/flax checkpoints -> run directories (read safely);
``authors_dit``: their DiT parameter tree -> this package's DiT weights;
``reference_stats``: FID reference statistics of other tools -> this package's .npz.
"""

from .authors_dit import AuthorsArchitecture, authors_parameter_shapes, authors_state_dict, infer_architecture, nest
from .jax_checkpoint import ConvertedRun, convert_jax_checkpoint, parse_shape, read_train_state

__all__ = [
    "AuthorsArchitecture",
    "authors_parameter_shapes",
    "ConvertedRun",
    "authors_state_dict",
    "convert_jax_checkpoint",
    "infer_architecture",
    "nest",
    "parse_shape",
    "read_train_state",
]
