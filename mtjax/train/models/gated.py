"""Gated mixtures of experts on a pooled clip vector: CGC/PLE and DSelect-k.

Like MMoE (`experts`), both map features x float32 [B, T, F] (any extraction, any T) to
`{task name: logits [B, n_columns]}` (`__call__(x, *, train=False)`; dropout draws from the
"dropout" rng), after summarising each clip over its valid frames (`experts.clip_statistics`),
so zero padding frames change nothing.

What is shared follows the trainer's default `shared=` (`step.not_a_head`: every top-level
parameter entry but `head_*`):

  PLE / CGC  shared: the shared experts `shared_level{l}_expert{i}` and the shared gates
             `shared_level{l}_gate` (PLE, every level but the last). Per task (`head_*`):
             the task's experts `head_{t}_level{l}_expert{i}`, its gates
             `head_{t}_level{l}_gate`, the tower `head_{t}_hidden{i}`, the output `head_{t}`.
             (Below the last level a task's experts also feed the shared gate, so other
             tasks' losses reach them too; a gradient combiner still treats them as the
             task's own: they get the plain sum's gradient.)
  DSelectK   shared: the experts `shared_expert{i}`. Per task (`head_*`): the gate
             `head_{t}_gate` (its selectors), the tower `head_{t}_hidden{i}`, `head_{t}`.

`gate_outputs` gives every gate's weights over its experts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtjax.tasks import Task
from mtjax.train.models import architectures, experts

# --------------------------------------------------------------------------- PLE and CGC


def _experts(
    model: nn.Module, prefix: str, n: int, h_BxD: jax.Array, train: bool
) -> list[jax.Array]:
    """`n` experts `{prefix}{i}` (MLPs of `model.expert_hidden`) of h: n arrays [B, H]."""
    return [
        experts._MLP(model.expert_hidden, model.activation, model.dropout, name=f"{prefix}{i}")(
            h_BxD, train
        )
        for i in range(n)
    ]


def _mix(gate_BxE: jax.Array, outputs: list[jax.Array]) -> jax.Array:
    """sum_i gate[:, i] * outputs[i]: float32 [B, H]."""
    return jnp.einsum("be,beh->bh", gate_BxE, jnp.stack(outputs, axis=1))


class PLE(nn.Module):
    """Progressive Layered Extraction: levels of shared and task-specific experts.

    Tang et al., "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL)
    Model for Personalized Recommendations", RecSys 2020.

    x [B, T, F] -> `clip_statistics` h [B, 2F]. Level l has `shared_experts` shared experts
    and `task_experts` experts per task (MLPs of widths `expert_hidden`, H its last). Task
    t's gate `head_{t}_level{l}_gate` is a softmax over its own and the shared experts
    (task_experts + shared_experts weights), computed from the task's input, and mixes
    their outputs into the task's input of the next level. Below the last level a shared
    gate `shared_level{l}_gate`, a softmax over every expert of the level (K * task_experts
    + shared_experts), mixes them into the shared experts' next input. Level 0 takes h
    everywhere. After the last level each task's mixture [B, H] goes through its tower
    `head_{t}_hidden{i}` (activation, dropout) to `head_{t}` logits [B, n_columns].
    `levels=1` is one Customized Gate Control (CGC) layer (`CGC`).

    Attributes:
      tasks: the tasks (a tuple of Task; static).
      levels: number of extraction levels (1: CGC).
      shared_experts: shared experts per level.
      task_experts: experts of each task per level.
      expert_hidden: widths of each expert's layers (non-empty).
      tower_hidden: widths of each task's tower layers (may be empty: a linear head).
      dropout: rate after each expert and tower layer (train only).
      activation: a name in `ACTIVATIONS` or a function.
    """

    tasks: tuple[Task, ...]
    levels: int = 2
    shared_experts: int = 2
    task_experts: int = 1
    expert_hidden: tuple[int, ...] = (64,)
    tower_hidden: tuple[int, ...] = ()
    dropout: float = 0.1
    activation: str | Callable[[jax.Array], jax.Array] = "relu"

    def __post_init__(self):
        experts.check_expert_model(self, ("levels", "shared_experts", "task_experts"))
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """{task name: logits float32 [B, n_columns]} from x float32 [B, T, F]."""
        architectures._check_x(type(self).__name__, x)
        h_BxD = experts.clip_statistics(x)
        own_in = {t.name: h_BxD for t in self.tasks}
        shared_in = h_BxD
        for level in range(self.levels):
            prefix = f"shared_level{level}_expert"
            shared = _experts(self, prefix, self.shared_experts, shared_in, train)
            own = {
                t: _experts(self, f"head_{t}_level{level}_expert", self.task_experts, h, train)
                for t, h in own_in.items()
            }
            if level < self.levels - 1:
                everyone = [e for outputs in own.values() for e in outputs] + shared
                gate = experts._Gate(len(everyone), name=f"shared_level{level}_gate")
                shared_in = _mix(gate(shared_in), everyone)
            n_gated = self.task_experts + self.shared_experts
            own_in = {
                t: _mix(
                    experts._Gate(n_gated, name=f"head_{t}_level{level}_gate")(h), own[t] + shared
                )
                for t, h in own_in.items()
            }
        act = architectures._activation(self.activation)
        out: dict[str, jax.Array] = {}
        for task in self.tasks:
            out |= architectures._heads(
                own_in[task.name], (task,), self.tower_hidden, act, self.dropout, train
            )
        return out


class CGC(PLE):
    """Customized Gate Control: one PLE level (Tang et al. 2020), `PLE(levels=1)`.

    Shared experts and each task's own experts; task t's gate `head_{t}_level0_gate`
    mixes its own and the shared ones for its tower. No shared gate. See `PLE`.
    """

    levels: int = 1

    def __post_init__(self):
        if self.levels != 1:
            raise ValueError(f"CGC: levels must be 1 (PLE stacks levels), got {self.levels!r}")
        super().__post_init__()


# --------------------------------------------------------------------------- DSelect-k


def smooth_step(t: jax.Array, gamma: float) -> jax.Array:
    """The cubic smooth-step of DSelect-k: 0 below -gamma/2, 1 above gamma/2, C^1 between.

    S(t) = -2 t^3 / gamma^3 + 3 t / (2 gamma) + 1/2 on [-gamma/2, gamma/2].
    """
    cubic = -2.0 * t**3 / gamma**3 + 3.0 * t / (2.0 * gamma) + 0.5
    return jnp.where(t <= -gamma / 2, 0.0, jnp.where(t >= gamma / 2, 1.0, cubic))


def n_bits(n_experts: int) -> int:
    """Binary digits of a selector over `n_experts`: ceil(log2 n), at least 1."""
    return max(1, math.ceil(math.log2(n_experts)))


def selector_codes(n_experts: int) -> tuple[np.ndarray, np.ndarray]:
    """The binary encoding of the experts.

    Returns:
      (bits, expert): bits float32 [2^m, m], bit j of code l being (l >> j) & 1; expert
      float32 [2^m, n_experts], one-hot of the expert code l selects: l mod n_experts (so a
      code past the last expert, when n_experts is not a power of 2, names a real one and
      every selector's weights sum to 1).
    """
    m = n_bits(n_experts)
    codes = np.arange(2**m)
    bits = ((codes[:, None] >> np.arange(m)[None, :]) & 1).astype(np.float32)
    return bits, np.eye(n_experts, dtype=np.float32)[codes % n_experts]


def _code_probabilities(z: jax.Array, gamma: float) -> jax.Array:
    """r(z) float32 [..., k, 2^m] over the codes of z [..., k, m]; rows sum to 1."""
    bits_LxM, _ = selector_codes(2 ** z.shape[-1])
    bits = bits_LxM.reshape((1,) * (z.ndim - 1) + bits_LxM.shape)  # [1.., 1, 2^m, m]
    s = smooth_step(z, gamma)[..., None, :]  # [..., k, 1, m]
    return jnp.prod(bits * s + (1.0 - bits) * (1.0 - s), axis=-1)


def selector_weights(z: jax.Array, gamma: float, n_experts: int) -> jax.Array:
    """Each single-expert selector's weights over the experts.

    r(z)_l = prod_j (bit_j(l) S(z_j) + (1 - bit_j(l)) (1 - S(z_j))) over the 2^m codes
    (a distribution; one-hot once every S(z_j) is 0 or 1), folded onto the experts.

    Args:
      z: float32 [..., k, m], the selectors' logits, m = `n_bits(n_experts)`.
      gamma: the smooth-step's width.
      n_experts: number of experts.

    Returns:
      float32 [..., k, n_experts]; each row sums to 1.
    """
    _, expert_LxN = selector_codes(n_experts)
    return _code_probabilities(z, gamma) @ expert_LxN


def _code_entropy(z: jax.Array, gamma: float) -> jax.Array:
    """Sum over selectors (and leading axes) of the entropy of r(z); 0 once binary."""
    r = _code_probabilities(z, gamma)
    return -jnp.sum(jnp.where(r > 0, r * jnp.log(jnp.where(r > 0, r, 1.0)), 0.0))


def _symmetric_uniform(scale: float) -> Callable[..., jax.Array]:
    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


class _DSelectGate(nn.Module):
    """k selectors over n experts mixed by softmax weights: float32 [B, n], rows sum to 1.

    Static: parameters `z` [k, m] and `w` [k]. Per example: `z` and `w` are Dense maps of
    the input (`z_dense`, `w_dense`). Sows the selectors' code entropy in "losses".
    """

    n_experts: int
    k: int
    gamma: float
    per_example: bool

    @nn.compact
    def __call__(self, h_BxD: jax.Array) -> jax.Array:
        m, b = n_bits(self.n_experts), h_BxD.shape[0]
        small = _symmetric_uniform(self.gamma / 100)
        if self.per_example:
            z = nn.Dense(self.k * m, kernel_init=small, name="z_dense")(h_BxD)
            z = z.reshape(b, self.k, m)
            w = nn.Dense(self.k, kernel_init=small, name="w_dense")(h_BxD)
        else:
            z = jnp.broadcast_to(self.param("z", small, (self.k, m)), (b, self.k, m))
            w = jnp.broadcast_to(self.param("w", small, (self.k,)), (b, self.k))
        if not self.is_initializing():  # init's variables stay {"params": ...}
            self.sow("losses", "selector_entropy", _code_entropy(z, self.gamma) / b)
        picked_BxKxN = selector_weights(z, self.gamma, self.n_experts)
        return jnp.einsum("bk,bkn->bn", nn.softmax(w, axis=-1), picked_BxKxN)


class DSelectK(nn.Module):
    """Shared experts with DSelect-k gates: each task mixes at most k of n experts.

    Hazimeh et al., "DSelect-k: Differentiable Selection in the Mixture of Experts with
    Applications to Multi-Task Learning", NeurIPS 2021.

    x [B, T, F] -> `clip_statistics` h [B, 2F] -> experts e_i(h) [B, H] (`shared_expert{i}`)
    -> per task t a gate (`head_{t}_gate`) of k single-expert selectors: selector i has
    m = ceil(log2 n) logits z_i, whose smooth-steps S(z_i) (`smooth_step`, width `gamma`)
    weigh the experts' binary codes (`selector_weights`); the gate is
    q = sum_i softmax(w)_i r(z_i) [n] and f_t = sum_e q_e e_e(h) [B, H] -> tower
    `head_{t}_hidden{i}` -> `head_{t}` logits [B, n_columns]. Once every |z| >= gamma/2 each
    selector picks one expert, so q has at most k non-zero weights (k when the selectors
    pick distinct experts), and gradients reach only those experts. Static gates (the
    default) are one q per task; `per_example=True` computes z and w from h.

    Entropy regulariser (optional, the paper's term pushing selectors to binarise): each
    gate sows the entropy of its selectors' codes, summed over selectors and averaged over
    the batch, into the "losses" collection; `selector_entropy` returns the total, to add
    `lam * entropy` to a loss in your own step. `mt.fit` does not add it.

    Attributes:
      tasks: the tasks (a tuple of Task; static).
      n_experts: number of experts n.
      k: selectors per gate, 1 <= k <= n_experts.
      gamma: the smooth-step's width (> 0).
      per_example: gates computed from each clip (True) or one per task (False).
      expert_hidden: widths of each expert's layers (non-empty).
      tower_hidden: widths of each task's tower layers (may be empty).
      dropout: rate after each expert and tower layer (train only).
      activation: a name in `ACTIVATIONS` or a function.
    """

    tasks: tuple[Task, ...]
    n_experts: int = 8
    k: int = 2
    gamma: float = 1.0
    per_example: bool = False
    expert_hidden: tuple[int, ...] = (64,)
    tower_hidden: tuple[int, ...] = ()
    dropout: float = 0.1
    activation: str | Callable[[jax.Array], jax.Array] = "relu"

    def __post_init__(self):
        def own_rules(name: str) -> None:
            if self.k > self.n_experts:
                raise ValueError(
                    f"{name}: k must be at most n_experts={self.n_experts}, got {self.k}"
                )
            ok = isinstance(self.gamma, int | float) and not isinstance(self.gamma, bool)
            if not (ok and self.gamma > 0):
                raise ValueError(f"{name}: gamma must be a positive number, got {self.gamma!r}")
            if not isinstance(self.per_example, bool):
                raise ValueError(
                    f"{name}: per_example must be True or False, got {self.per_example!r}"
                )

        experts.check_expert_model(self, ("n_experts", "k"), own_rules)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """{task name: logits float32 [B, n_columns]} from x float32 [B, T, F]."""
        architectures._check_x(type(self).__name__, x)
        h_BxD = experts.clip_statistics(x)
        outputs = _experts(self, "shared_expert", self.n_experts, h_BxD, train)
        act = architectures._activation(self.activation)
        out: dict[str, jax.Array] = {}
        for task in self.tasks:
            gate = _DSelectGate(
                self.n_experts,
                self.k,
                float(self.gamma),
                self.per_example,
                name=f"head_{task.name}_gate",
            )
            out |= architectures._heads(
                _mix(gate(h_BxD), outputs), (task,), self.tower_hidden, act, self.dropout, train
            )
        return out


# --------------------------------------------------------------------------- inspection


def gate_outputs(model: nn.Module, variables: Any, x: jax.Array) -> dict[str, jax.Array]:
    """{gate name: float32 [B, n]}: every gate's weights over its experts (rows sum to 1).

    Names are the gates' parameter names: `head_{t}_level{l}_gate` and
    `shared_level{l}_gate` (PLE, CGC), `head_{t}_gate` (DSelectK).

    Args:
      model: a PLE, CGC or DSelectK.
      variables: its variables ({"params": ...}).
      x: float32 [B, T, F].
    """
    if not isinstance(model, PLE | DSelectK):
        raise ValueError(
            f"gate_outputs: model must be a PLE, CGC or DSelectK, got {type(model).__name__}"
        )
    _, state = model.apply(
        variables,
        x,
        capture_intermediates=lambda m, _: isinstance(m, experts._Gate | _DSelectGate),
        mutable=["intermediates"],
    )
    return {name: v["__call__"][0] for name, v in state["intermediates"].items() if "__call__" in v}


def selector_entropy(model: DSelectK, variables: Any, x: jax.Array) -> jax.Array:
    """The DSelect-k entropy regulariser: scalar, summed over tasks and selectors.

    Each selector's entropy of r(z) over the codes (`selector_weights`), averaged over the
    batch; 0 once every selector is binary. Differentiable in `variables`.

    Args:
      model: a DSelectK.
      variables: its variables ({"params": ...}).
      x: float32 [B, T, F].
    """
    if not isinstance(model, DSelectK):
        raise ValueError(f"selector_entropy: model must be a DSelectK, got {type(model).__name__}")
    _, state = model.apply({"params": variables["params"]}, x, mutable=["losses"])
    return sum(jax.tree.leaves(state["losses"]), jnp.zeros(()))
