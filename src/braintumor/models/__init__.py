"""The model zoo: classifiers and 2D/3D segmenters by name (see ``registry`` for conventions)."""

from braintumor.models import (  # noqa: F401  (imported to register their models)
    attention_resunet,
    classifiers,
    dilated_unet,
    maxpool_head,
    resunetpp,
    segmenters,
    segmenters3d,
    small_resnet,
    unet3plus,
)
from braintumor.models.registry import (
    ModelSpec,
    build_model,
    count_parameters,
    get_spec,
    list_models,
    logits_to_probs,
    model_size_mb,
    register,
)
from braintumor.models.weights import LoadReport, load_weights

__all__ = [
    "LoadReport",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "get_spec",
    "list_models",
    "load_weights",
    "logits_to_probs",
    "model_size_mb",
    "register",
]
