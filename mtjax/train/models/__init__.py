"""Models: Flax Linen modules mapping x [B, T, F] to {task name: logits [B, C_k]}.

architectures (the hard-sharing DNN and CNN, one head per task) use kernels (the
convolution formulations measured fastest per backend, with `nn.Conv`'s parameters);
experts (MMoE, CrossStitch: soft sharing on each clip's statistics over its valid frames);
gated (CGC/PLE: shared and task-specific experts, per-task gates; DSelect-k: sparse
differentiable gates picking k of n experts), on the same clip statistics; attention (MTAN:
per-task soft attention masks over HardSharingCNN's shared blocks). Every model names its
per-task parameters `head_*`, so the trainer's default `shared=` gives a gradient combiner
the shared ones.
`MODELS` names every one, for experiment files and for rebuilding a run's model.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn

from mtjax.tasks import Task
from mtjax.train.models import architectures
from mtjax.train.models.architectures import (
    ACTIVATIONS,
    NORMS,
    HardSharingCNN,
    HardSharingDNN,
    init_variables,
)
from mtjax.train.models.attention import MTAN, attention_masks
from mtjax.train.models.experts import CrossStitch, MMoE, clip_statistics, gate_weights
from mtjax.train.models.gated import (
    CGC,
    PLE,
    DSelectK,
    gate_outputs,
    selector_entropy,
    selector_weights,
    smooth_step,
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

MODELS = {
    **architectures.MODELS,
    "mmoe": MMoE,
    "cross_stitch": CrossStitch,
    "cgc": CGC,
    "ple": PLE,
    "dselect_k": DSelectK,
    "mtan": MTAN,
}


def model_from_config(name: str, tasks: Sequence[Task], **kwargs: Any) -> nn.Module:
    """The model called `name` in `MODELS`, built for `tasks` with `kwargs`."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](tuple(tasks), **kwargs)


__all__ = [
    "ACTIVATIONS",
    "AUTO_CONV",
    "CGC",
    "CONVS",
    "Conv2D",
    "ConvFn",
    "ConvReluPool",
    "CrossStitch",
    "DSelectK",
    "HardSharingCNN",
    "HardSharingDNN",
    "MMoE",
    "MODELS",
    "MTAN",
    "NORMS",
    "PLE",
    "attention_masks",
    "clip_statistics",
    "conv_im2col",
    "conv_relu_pool_stencil",
    "conv_xla",
    "conv_xla_stencil",
    "gate_outputs",
    "gate_weights",
    "im2col",
    "init_variables",
    "max_pool",
    "model_from_config",
    "resolve_conv",
    "selector_entropy",
    "selector_weights",
    "smooth_step",
]
