"""Multi-Task Attention Network (MTAN): per-task soft attention over a shared CNN.

Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019.

The shared backbone is `HardSharingCNN`'s: block i is `shared_conv{i}` (kernel x kernel,
'SAME', a `kernels.Conv2D` with `nn.Conv`'s parameters) -> norm `shared_norm{i}` (over the
valid frames) -> relu -> `kernels.max_pool`, with the same names, so its backbone
parameters are a HardSharingCNN's. Each task t has an attention module per block,
`head_{t}_attention{i}`: it reads the block's features s_i [B, T_i, F_i, C_i] (and, past
block 0, its own attended features of block i-1 after a 3x3 conv `previous` -> norm ->
relu to C_i channels), and gives a mask a = sigmoid(Dense(relu(norm(Dense([s_i; prev])))))
in (0, 1), [B, T_i, F_i, C_i] (Dense on the channel axis: the paper's 1x1 convolutions).
The task keeps max_pool(a * s_i), elementwise. After the last block each task's attended
map is averaged over the valid frames (and frequency with `global_pool="all"`), flattened,
passed through dropout and its head (`head_{t}_hidden{i}`, `head_{t}`), as in
HardSharingCNN. Padding frames (all features exactly 0) are left out of every norm's
statistics and of the average, so padding a batch further changes nothing.

Shared (trainer default `shared=`): the backbone `shared_conv{i}`, `shared_norm{i}`. Per
task (`head_*`): the attention modules and the head. `attention_masks` gives the masks.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtjax.tasks import Task
from mtjax.train.models import architectures, kernels


class _TaskAttention(nn.Module):
    """One task's attention mask at one block: float32 in (0, 1), the shape of s."""

    channels: int
    kernel: int
    norm: str | None
    conv: kernels.ConvFn

    @nn.compact
    def __call__(self, s, previous, valid_BxT, train: bool):
        z = s
        if previous is not None:
            size = (self.kernel, self.kernel)
            p = kernels.Conv2D(self.channels, size, self.conv, name="previous")(previous)
            p = architectures._normalize(p, self.norm, "previous_norm", train, valid_BxT)
            z = jnp.concatenate([s, nn.relu(p)], axis=-1)
        z = nn.Dense(self.channels, name="gate_in")(z)
        z = nn.relu(architectures._normalize(z, self.norm, "gate_norm", train, valid_BxT))
        return nn.sigmoid(nn.Dense(self.channels, name="gate_out")(z))


class MTAN(nn.Module):
    """Shared CNN blocks, each task attending to every block through its own soft masks.

    See the module docstring. The settings mean what they mean for `HardSharingCNN`
    (`conv`: its formulations; "stencil_block" runs as "xla_stencil", as the attention
    needs each block's map before its pool).

    Attributes:
      tasks: the tasks (a tuple of Task; static).
      channels: output channels of each shared block (and of its attention masks).
      kernel: square kernel size.
      pool: max-pool window and stride, per axis.
      dropout: rate on the pooled features and after each head hidden layer (train only).
      norm: "layer", "batch" or None, in the backbone and the attention modules.
      head_hidden: widths of each task's hidden layers.
      global_pool: "time" (mean over time, frequency kept) or "all" (mean over both).
      conv: "auto", a name in `kernels.CONVS` or a function, as for HardSharingCNN.
    """

    tasks: tuple[Task, ...]
    channels: tuple[int, ...] = (16, 32, 64, 64)
    kernel: int = 3
    pool: int = 2
    dropout: float = 0.1
    norm: str | None = "layer"
    head_hidden: tuple[int, ...] = (128,)
    global_pool: str = "time"
    conv: str | kernels.ConvFn = "auto"

    def __post_init__(self):
        # HardSharingCNN's checks, one copy: it refuses what this model refuses.
        architectures._as_tuples(self, "tasks", "channels", "head_hidden")
        try:
            architectures.HardSharingCNN(
                self.tasks,
                channels=self.channels,
                kernel=self.kernel,
                pool=self.pool,
                dropout=self.dropout,
                norm=self.norm,
                head_hidden=self.head_hidden,
                global_pool=self.global_pool,
                conv=self.conv,
                parent=None,
            )
        except ValueError as err:
            raise ValueError(str(err).replace("HardSharingCNN:", "MTAN:", 1)) from None
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """{task name: logits float32 [B, n_columns]} from x float32 [B, T, F]."""
        architectures._check_x(type(self).__name__, x)
        conv = kernels.resolve_conv(self.conv)
        fn = kernels.CONVS[conv] if isinstance(conv, str) else conv
        size = (self.kernel, self.kernel)
        valid_BxT = architectures.valid_frames(x)
        h = x[..., None]  # [B, T, F, 1]
        attended: dict[str, Any] = {t.name: None for t in self.tasks}
        for i, width in enumerate(self.channels):
            s = kernels.Conv2D(width, size, fn, name=f"shared_conv{i}")(h)
            s = nn.relu(architectures._normalize(s, self.norm, f"shared_norm{i}", train, valid_BxT))
            for name, previous in list(attended.items()):
                attention = _TaskAttention(
                    width, self.kernel, self.norm, fn, name=f"head_{name}_attention{i}"
                )
                mask = attention(s, previous, valid_BxT, train)
                attended[name] = kernels.max_pool(mask * s, self.pool)
            h = kernels.max_pool(s, self.pool)
            valid_BxT = architectures._pooled_valid(valid_BxT, self.pool)
        out: dict[str, jax.Array] = {}
        for task in self.tasks:
            a = architectures.valid_mean(attended[task.name], valid_BxT, self.global_pool)
            a = nn.Dropout(self.dropout, deterministic=not train)(a)
            out |= architectures._heads(a, (task,), self.head_hidden, nn.relu, self.dropout, train)
        return out


def attention_masks(model: MTAN, variables: Any, x: jax.Array) -> dict[str, list[jax.Array]]:
    """{task name: [mask of block i, float32 [B, T_i, F_i, C_i] in (0, 1)]}.

    Args:
      model: an MTAN.
      variables: its variables ({"params": ...}, and "batch_stats" with norm="batch").
      x: float32 [B, T, F].
    """
    if not isinstance(model, MTAN):
        raise ValueError(f"attention_masks: model must be an MTAN, got {type(model).__name__}")
    _, state = model.apply(
        variables,
        x,
        capture_intermediates=lambda module, _: isinstance(module, _TaskAttention),
        mutable=["intermediates"],
    )
    captured = state["intermediates"]
    blocks = range(len(model.channels))
    return {
        t.name: [captured[f"head_{t.name}_attention{i}"]["__call__"][0] for i in blocks]
        for t in model.tasks
    }
