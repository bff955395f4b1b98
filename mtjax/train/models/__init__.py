"""Models: Flax Linen modules mapping x [B, T, F] to {task name: logits [B, C_k]}.

architectures (the hard-sharing DNN and CNN, one head per task) use kernels (the
convolution formulations measured fastest per backend, with `nn.Conv`'s parameters).
"""

from mtjax.train.models.architectures import (
    ACTIVATIONS,
    MODELS,
    NORMS,
    HardSharingCNN,
    HardSharingDNN,
    init_variables,
    model_from_config,
)
from mtjax.train.models.kernels import (
    AUTO_CONV,
    CONVS,
    Conv2D,
    ConvFn,
    ConvReluPool,
    conv_im2col,
    conv_relu_pool_stencil,
    conv_xla,
    conv_xla_stencil,
    im2col,
    max_pool,
    resolve_conv,
)

__all__ = [
    "ACTIVATIONS",
    "AUTO_CONV",
    "CONVS",
    "MODELS",
    "NORMS",
    "Conv2D",
    "ConvFn",
    "ConvReluPool",
    "HardSharingCNN",
    "HardSharingDNN",
    "conv_im2col",
    "conv_relu_pool_stencil",
    "conv_xla",
    "conv_xla_stencil",
    "im2col",
    "init_variables",
    "max_pool",
    "model_from_config",
    "resolve_conv",
]
