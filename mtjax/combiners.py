"""Loss combiners: task losses [K] -> one scalar, as optax-style pure functions.

A combiner is built like `optax.GradientTransformation`: a factory returns a `Combiner`,
a NamedTuple of pure functions, and all memory sits in an explicit state NamedTuple:

    comb = mt.losses.dwa(temperature=2.0)
    state = comb.init(n_tasks)
    total, state = comb.apply(losses_K, state, present=present_K, key=key, step=step,
                              epoch=epoch)

Every `apply` accepts the keywords `present, key, step, epoch, grads, params` (and
swallows what it does not use). Combiners with `uses_grads` get `grads`: per-task
gradients, a pytree whose leaves have a leading task axis K. Combiners with
`init_params` get `params`, which the trainer optimises with the model.

Contract with the trainer: the model's gradient is `sum_k (d total / d losses_k) * g_k`,
so a gradient-based combiner returns `total = sum_k stop_gradient(a_k) * losses_k` with
the task weights `a` it computed. Every combiner gives absent tasks weight exactly 0,
normalises over present tasks only, and returns 0 (never NaN) when no task is present.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


# ----------------------------------------------------------------------------------------
# Combiners


class Combiner(NamedTuple):
    """A loss combiner: `init(n_tasks) -> state`, `apply(losses, state, **kw) -> (total, state)`.

    Attributes:
      init: n_tasks -> state, a NamedTuple of arrays.
      apply: (losses float32 [K], state, *, present, key, step, epoch, grads, params)
        -> (total float32 [], new state).
      uses_grads: whether `apply` needs `grads=`, per-task gradients with a leading K axis.
      init_params: n_tasks -> trainable parameters, given to `apply` as `params=` and
        optimised with the model; None for combiners without any.
    """

    init: Callable[[int], Any]
    apply: Callable[..., tuple[jax.Array, Any]]
    uses_grads: bool = False
    init_params: Callable[[int], Any] | None = None


class EmptyState(NamedTuple):
    """The state of a combiner without memory."""


def _count(present: jax.Array) -> jax.Array:
    """float32 [], number of present tasks."""
    return present.sum().astype(jnp.float32)


def _uniform(present: jax.Array) -> jax.Array:
    """float32 [K], 1/n on the n present tasks, 0 elsewhere (all 0 when none is)."""
    return jnp.where(present, 1.0 / jnp.maximum(_count(present), 1.0), 0.0)


def _masked_softmax(z: jax.Array, present: jax.Array) -> jax.Array:
    """float32 [K], softmax of `z` over the present tasks, 0 elsewhere."""
    z = jnp.where(present, z, -jnp.inf)
    top = jnp.max(z)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.where(present, jnp.exp(z - top), 0.0)
    return e / jnp.maximum(e.sum(), jnp.finfo(e.dtype).tiny)


def _weighted_total(weights: jax.Array, losses: jax.Array, present: jax.Array) -> jax.Array:
    """sum_k stop_gradient(w_k) * L_k over present tasks: d total / d L_k is exactly w_k."""
    w = jax.lax.stop_gradient(weights).astype(losses.dtype)
    return jnp.sum(jnp.where(present, w * losses, 0.0))


def _no_state(n_tasks: int) -> EmptyState:
    del n_tasks
    return EmptyState()


def stateless(fn: Callable[[jax.Array], jax.Array]) -> Combiner:
    """A Combiner from a plain function `losses [K] -> scalar` (absent tasks' losses are 0)."""

    def apply(losses, state, **extra):
        del extra
        return fn(losses), state

    return Combiner(_no_state, apply)


def sum_() -> Combiner:
    """Sum of the present tasks' losses: total = sum_k present_k L_k."""

    def apply(losses, state, *, present, **extra):
        del extra
        return jnp.sum(jnp.where(present, losses, 0.0)), state

    return Combiner(_no_state, apply)


def mean() -> Combiner:
    """Mean over the present tasks: total = sum_k present_k L_k / max(n_present, 1)."""

    def apply(losses, state, *, present, **extra):
        del extra
        return _weighted_total(_uniform(present), losses, present), state

    return Combiner(_no_state, apply)


def weighted(weights: Sequence[float]) -> Combiner:
    """Fixed task weights: total = sum_k present_k w_k L_k (not renormalised).

    Args:
      weights: one non-negative float per task, in task order.
    """
    w = [float(v) for v in weights]
    if not all(math.isfinite(v) and v >= 0 for v in w):
        raise ValueError(f"task weights must be finite and non-negative, got {w}")

    def init(n_tasks: int) -> EmptyState:
        if n_tasks != len(w):
            raise ValueError(f"weighted: {len(w)} weights for {n_tasks} tasks")
        return EmptyState()

    def apply(losses, state, *, present, **extra):
        del extra
        return _weighted_total(jnp.asarray(w, jnp.float32), losses, present), state

    return Combiner(init, apply)


class UncertaintyParams(NamedTuple):
    log_var: jax.Array  # float32 [K], s_k = log sigma_k^2, trainable


def uncertainty_weighting(init_log_var: float = 0.0) -> Combiner:
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    total = sum_k present_k * (0.5 * exp(-s_k) * L_k + 0.5 * s_k), with s_k = log sigma_k^2
    trainable (`init_params`, updated by the trainer with the model's optimizer). This is
    the paper's `L / (2 sigma^2) + log sigma`; for fixed L_k it is minimised at s_k = log L_k,
    and d total / d s_k = 0.5 * (1 - exp(-s_k) * L_k). Absent tasks get no gradient.

    Args:
      init_log_var: initial s_k of every task (0: every weight starts at 0.5).
    """

    def init_params(n_tasks: int) -> UncertaintyParams:
        return UncertaintyParams(log_var=jnp.full([n_tasks], init_log_var, jnp.float32))

    def apply(losses, state, *, present, params=None, **extra):
        del extra
        if params is None:
            raise ValueError("uncertainty_weighting needs params= (from its init_params)")
        s = params.log_var.astype(losses.dtype)
        terms = 0.5 * jnp.exp(-s) * losses + 0.5 * s
        return jnp.sum(jnp.where(present, terms, 0.0)), state

    return Combiner(_no_state, apply, init_params=init_params)


class DwaState(NamedTuple):
    epoch: jax.Array  # int32 [], the epoch being accumulated
    sums: jax.Array  # float32 [K], sum of this epoch's batch losses of each task
    counts: jax.Array  # float32 [K], number of this epoch's batches that had each task
    history: jax.Array  # float32 [2, K], mean loss of the last two epochs with the task
    seen: jax.Array  # int32 [K], how many of those rows are filled (0, 1 or 2)


def dwa_weights(
    history: jax.Array, temperature: float = 2.0, *, present: jax.Array | None = None
) -> jax.Array:
    """Dynamic weight average (Liu, Johns & Davison, CVPR 2019).

    w_k = n * softmax_k(r / T), r_k = L_k(e-1) / L_k(e-2), softmax over the n present tasks.

    Args:
      history: float32 [2, K], mean task losses of epochs e-2 (row 0) and e-1 (row 1).
      temperature: T; larger gives more even weights.
      present: bool [K]; default all present. Absent tasks get weight 0.

    Returns:
      float32 [K], summing to the number of present tasks.
    """
    history = jnp.asarray(history, jnp.float32)
    if present is None:
        present = jnp.ones(history.shape[1:], bool)
    before, last = history[0], history[1]
    ratio = jnp.where(before > 0, last / jnp.where(before > 0, before, 1.0), 1.0)
    return _count(present) * _masked_softmax(ratio / temperature, present)


def dwa(temperature: float = 2.0) -> Combiner:
    """Dynamic weight average: weights from the rate each task's loss fell at.

    total = sum_k w_k L_k with w = `dwa_weights` of the mean losses of the previous two
    epochs. A task with fewer than two past epochs counts as r_k = 1, so every weight is 1
    in the first two epochs. The state sums this epoch's batch losses and rolls them over
    to `history` on the first step of a new `epoch` (a task absent for a whole epoch keeps
    its history).

    Args:
      temperature: T of the softmax.
    """

    def init(n_tasks: int) -> DwaState:
        return DwaState(
            epoch=jnp.zeros([], jnp.int32),
            sums=jnp.zeros([n_tasks], jnp.float32),
            counts=jnp.zeros([n_tasks], jnp.float32),
            history=jnp.ones([2, n_tasks], jnp.float32),
            seen=jnp.zeros([n_tasks], jnp.int32),
        )

    def apply(losses, state, *, present, epoch, **extra):
        del extra
        epoch = jnp.asarray(epoch, jnp.int32)
        # roll over the finished epoch
        new_epoch = epoch != state.epoch
        shift_K = new_epoch & (state.counts > 0)
        finished_K = state.sums / jnp.maximum(state.counts, 1.0)
        shifted = jnp.stack([state.history[1], finished_K])
        history = jnp.where(shift_K[None, :], shifted, state.history)
        seen = jnp.where(shift_K, jnp.minimum(state.seen + 1, 2), state.seen)
        sums = jnp.where(new_epoch, 0.0, state.sums)
        counts = jnp.where(new_epoch, 0.0, state.counts)
        # weigh, then accumulate this step's losses
        ready = (seen >= 2)[None, :]
        w = dwa_weights(jnp.where(ready, history, 1.0), temperature, present=present)
        seen_losses = jax.lax.stop_gradient(losses).astype(jnp.float32)
        sums = sums + jnp.where(present, seen_losses, 0.0)
        counts = counts + present.astype(jnp.float32)
        new = DwaState(epoch=epoch, sums=sums, counts=counts, history=history, seen=seen)
        return _weighted_total(w, losses, present), new

    return Combiner(init, apply)


_RLW_DRAWS = ("normal", "uniform", "dirichlet")


def rlw(distribution: str = "normal") -> Combiner:
    """Random loss weighting (Lin et al., TMLR 2022).

    Each step draws fresh weights from `key`: w = n * softmax(z) over the n present tasks,
    z_k ~ N(0, 1) ("normal") or U(0, 1) ("uniform"); "dirichlet" draws w / n from
    Dirichlet(1, ..., 1). The factor n makes the weights sum to n, so the loss has the
    scale of `sum()` (the paper's weights sum to 1). total = sum_k w_k L_k.

    Args:
      distribution: "normal", "uniform" or "dirichlet".
    """
    if distribution not in _RLW_DRAWS:
        raise ValueError(f"unknown rlw distribution {distribution!r}; known: {_RLW_DRAWS}")

    def apply(losses, state, *, present, key, **extra):
        del extra
        shape = losses.shape
        if distribution == "normal":
            p = _masked_softmax(jax.random.normal(key, shape), present)
        elif distribution == "uniform":
            p = _masked_softmax(jax.random.uniform(key, shape), present)
        else:
            e = jnp.where(present, jax.random.exponential(key, shape), 0.0)
            p = e / jnp.maximum(e.sum(), jnp.finfo(e.dtype).tiny)
        return _weighted_total(_count(present) * p, losses, present), state

    return Combiner(_no_state, apply)


# ----------------------------------------------------------------------------------------
# Per-task gradients


def flatten_task_grads(grads: Any) -> jax.Array:
    """Per-task gradients as rows of one matrix.

    Args:
      grads: pytree whose every leaf has a leading task axis K.

    Returns:
      float32 [K, P], P the number of parameters.
    """
    leaves = jax.tree.leaves(grads)
    n_tasks = _leading_axis(leaves)
    return jnp.concatenate(
        [leaf.reshape(n_tasks, -1).astype(jnp.float32) for leaf in leaves], axis=1
    )


def gram(grads: Any) -> jax.Array:
    """Gram matrix of the per-task gradients, G_ij = g_i . g_j, leaf by leaf (no copy).

    Args:
      grads: pytree whose every leaf has a leading task axis K.

    Returns:
      float32 [K, K].
    """
    leaves = jax.tree.leaves(grads)
    n_tasks = _leading_axis(leaves)
    g_KxK = jnp.zeros([n_tasks, n_tasks], jnp.float32)
    for leaf in leaves:
        f_KxP = leaf.reshape(n_tasks, -1).astype(jnp.float32)
        g_KxK = g_KxK + jnp.matmul(f_KxP, f_KxP.T, precision=jax.lax.Precision.HIGHEST)
    return g_KxK


def _leading_axis(leaves: list) -> int:
    if not leaves:
        raise ValueError("per-task gradients: the pytree has no leaves")
    sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"per-task gradients need one leading task axis on every leaf, got sizes {sizes}"
        )
    return sizes.pop()


def _task_gram(grads: Any, losses: jax.Array, name: str) -> jax.Array:
    """G [K, K] of `grads`, checked against the number of tasks; no gradient flows through."""
    if grads is None:
        raise ValueError(f"{name} needs grads= (per-task gradients with a leading task axis)")
    g_KxK = jax.lax.stop_gradient(gram(grads))
    if g_KxK.shape[0] != losses.shape[0]:
        raise ValueError(f"{name}: grads have {g_KxK.shape[0]} tasks, losses {losses.shape[0]}")
    return g_KxK


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """num / den where den > 0, else 0 (no NaN, in value or gradient)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


class GradNormState(NamedTuple):
    weights: jax.Array  # float32 [K], the task weights w_k
    initial: jax.Array  # float32 [K], L_k(0), each task's loss the first time it was present
    has_initial: jax.Array  # bool [K], whether `initial` is recorded


def gradnorm(alpha: float = 1.5, lr: float = 0.025) -> Combiner:
    """GradNorm (Chen et al., ICML 2018): balance the tasks' gradient norms.

    total = sum_k w_k L_k with the state's weights, renormalised to sum to the number n of
    present tasks. Then one gradient step of size `lr` on
        L_grad(w) = sum_k |w_k G_k - stop_gradient(mean_j(w_j G_j) * r_k^alpha)|,
    G_k = ||g_k|| over all parameters, r_k = (L_k / L_k(0)) / mean_j(L_j / L_j(0)) (means
    over present tasks), weights clipped at 1e-3 and renormalised to sum to n. The weights
    live in the state (they are not trained by the model's optimizer).

    Args:
      alpha: asymmetry; larger pulls slow tasks harder.
      lr: step size of the weight update.
    """

    def init(n_tasks: int) -> GradNormState:
        return GradNormState(
            weights=jnp.ones([n_tasks], jnp.float32),
            initial=jnp.zeros([n_tasks], jnp.float32),
            has_initial=jnp.zeros([n_tasks], bool),
        )

    def normalised(w_K, present):
        """w scaled to sum to the number of present tasks over them, 0 elsewhere."""
        w_K = jnp.where(present, w_K, 0.0)
        return w_K * _safe_div(_count(present), w_K.sum())

    def apply(losses, state, *, present, grads=None, **extra):
        del extra
        g_KxK = _task_gram(grads, losses, "gradnorm")
        norms_K = jnp.sqrt(jnp.maximum(jnp.diagonal(g_KxK), 0.0))
        seen_K = jax.lax.stop_gradient(losses).astype(jnp.float32)
        first = present & ~state.has_initial
        initial = jnp.where(first, seen_K, state.initial)
        has_initial = state.has_initial | present
        w_K = normalised(state.weights, present)
        total = _weighted_total(w_K, losses, present)
        # relative inverse training rates
        rate_K = jnp.where(present, _safe_div(seen_K, initial), 0.0)
        r_K = _safe_div(rate_K, jnp.sum(rate_K) / jnp.maximum(_count(present), 1.0))
        r_K = jnp.where(present, r_K, 0.0)

        def l_grad(w):
            wg_K = w * norms_K
            mean_wg = jnp.sum(jnp.where(present, wg_K, 0.0)) / jnp.maximum(_count(present), 1.0)
            target_K = jax.lax.stop_gradient(mean_wg * r_K**alpha)
            return jnp.sum(jnp.where(present, jnp.abs(wg_K - target_K), 0.0))

        stepped = jnp.maximum(w_K - lr * jax.grad(l_grad)(w_K), 1e-3)
        weights = jnp.where(present, normalised(stepped, present), state.weights)
        return total, GradNormState(weights=weights, initial=initial, has_initial=has_initial)

    return Combiner(init, apply, uses_grads=True)


def pcgrad() -> Combiner:
    """PCGrad, projecting conflicting gradients (Yu et al., NeurIPS 2020).

    For each present task i, in its own random order of the other present tasks j (drawn
    from `key`): if g_i^PC . g_j < 0, g_i^PC -= (g_i^PC . g_j) / ||g_j||^2 g_j. The combined
    gradient is sum_i g_i^PC. Every g_i^PC is kept as coefficients over the original
    gradients, so all work is on the Gram matrix G [K, K]; the result is weights a [K] with
    combined gradient sum_k a_k g_k, and total = sum_k stop_gradient(a_k) L_k. Without a
    conflict a = 1 on every present task (the plain sum).
    """

    def apply(losses, state, *, present, key, grads=None, **extra):
        del extra
        g_KxK = _task_gram(grads, losses, "pcgrad")
        n_tasks = losses.shape[0]
        eye_KxK = jnp.eye(n_tasks, dtype=jnp.float32)
        orders_KxK = jax.vmap(lambda k: jax.random.permutation(k, n_tasks))(
            jax.random.split(key, n_tasks)
        )

        def project(i, order_K):
            def body(c_K, j):
                dot = c_K @ g_KxK[:, j]
                conflict = (dot < 0) & present[j] & (j != i)
                coef = jnp.where(conflict, _safe_div(dot, g_KxK[j, j]), 0.0)
                return c_K - coef * eye_KxK[j], None

            c_K, _ = jax.lax.scan(body, eye_KxK[i], order_K)
            return jnp.where(present[i], c_K, 0.0)

        coefs_KxK = jax.vmap(project)(jnp.arange(n_tasks), orders_KxK)
        a_K = jnp.where(present, coefs_KxK.sum(0), 0.0)
        return _weighted_total(a_K, losses, present), state

    return Combiner(_no_state, apply, uses_grads=True)


def cagrad(c: float = 0.5, steps: int = 20) -> Combiner:
    """Conflict-averse gradient descent (Liu et al., NeurIPS 2021).

    With g_0 the mean gradient of the n present tasks and phi = c^2 ||g_0||^2, find w on
    the simplex of present tasks minimising F(w) = g_w . g_0 + sqrt(phi) ||g_w||, by
    `steps` exponentiated-gradient (mirror-descent) steps on the Gram matrix, w_k *=
    exp(-eta_t dF/dw_k), with the spread of eta_t dF/dw over present tasks scaled to
    8 / sqrt(t + 1) (the best iterate is kept). The combined
    gradient is d = (g_0 + sqrt(phi) / ||g_w|| g_w) / (1 + c^2), i.e. task weights
    a = (1/n + sqrt(phi) / ||g_w|| w) / (1 + c^2); total = sum_k stop_gradient(a_k) L_k.
    The result has the scale of the mean gradient; c = 0 gives exactly the mean.

    Args:
      c: radius of the ball around g_0 searched, relative to ||g_0||.
      steps: mirror-descent steps.
    """
    if c < 0:
        raise ValueError(f"cagrad: c must be >= 0, got {c}")

    def apply(losses, state, *, present, grads=None, **extra):
        del extra
        g_KxK = _task_gram(grads, losses, "cagrad")
        b_K = _uniform(present)
        gb_K = g_KxK @ b_K
        root_phi = c * jnp.sqrt(jnp.maximum(b_K @ gb_K, 0.0))

        def norm_w(w_K):
            return jnp.sqrt(jnp.maximum(w_K @ g_KxK @ w_K, 0.0))

        def objective(w_K):
            return w_K @ gb_K + root_phi * norm_w(w_K)

        def body(t, carry):
            w_K, best_K, best_f = carry
            slope_K = gb_K + root_phi * _safe_div(g_KxK @ w_K, norm_w(w_K))
            low = jnp.min(jnp.where(present, slope_K, jnp.inf))
            high = jnp.max(jnp.where(present, slope_K, -jnp.inf))
            # the step spans [0, 8 / sqrt(t + 1)] whatever the gradients' scale
            step_K = _safe_div(slope_K - low, high - low) * (8.0 / jnp.sqrt(t + 1.0))
            w_K = jnp.where(present, w_K * jnp.exp(-jnp.where(present, step_K, 0.0)), 0.0)
            w_K = _safe_div(w_K, w_K.sum())
            f = objective(w_K)
            better = f < best_f
            return w_K, jnp.where(better, w_K, best_K), jnp.where(better, f, best_f)

        _, w_K, _ = jax.lax.fori_loop(0, steps, body, (b_K, b_K, objective(b_K)))
        a_K = (b_K + _safe_div(root_phi, norm_w(w_K)) * w_K) / (1.0 + c**2)
        return _weighted_total(jnp.where(present, a_K, 0.0), losses, present), state

    return Combiner(_no_state, apply, uses_grads=True)


def mgda(steps: int = 25) -> Combiner:
    """MGDA: the min-norm point of the present tasks' gradients (Sener & Koltun, NeurIPS 2018).

    Minimises ||sum_k w_k g_k||^2 over the simplex of present tasks by Frank-Wolfe on the
    Gram matrix, from the uniform point, `steps` steps, each with exact line search (so two
    tasks are solved exactly in one step: w_1 = clip((g_2.g_2 - g_1.g_2) / ||g_1 - g_2||^2,
    0, 1)). Weights sum to 1; total = sum_k stop_gradient(w_k) L_k. Gradients are used
    unnormalised.

    Args:
      steps: Frank-Wolfe steps.
    """

    def apply(losses, state, *, present, grads=None, **extra):
        del extra
        g_KxK = _task_gram(grads, losses, "mgda")
        eye_KxK = jnp.eye(losses.shape[0], dtype=jnp.float32)

        def body(_, w_K):
            gw_K = g_KxK @ w_K
            t = jnp.argmin(jnp.where(present, gw_K, jnp.inf))
            ww = w_K @ gw_K
            gamma = _safe_div(ww - gw_K[t], ww - 2.0 * gw_K[t] + g_KxK[t, t])
            gamma = jnp.clip(gamma, 0.0, 1.0)
            return (1.0 - gamma) * w_K + gamma * eye_KxK[t]

        w_K = jax.lax.fori_loop(0, steps, body, _uniform(present))
        w_K = jnp.where(present & present.any(), w_K, 0.0)
        return _weighted_total(w_K, losses, present), state

    return Combiner(_no_state, apply, uses_grads=True)


# ----------------------------------------------------------------------------------------
# Picking a combiner


def as_combiner(x: Any) -> Combiner:
    """A Combiner from a Combiner, an object with `init` and `apply`, a plain function
    `losses [K] -> scalar` (made `stateless`), or a name in `COMBINERS`."""
    if isinstance(x, Combiner):
        return x
    if isinstance(x, str):
        return combiner_from_config(x)
    if callable(getattr(x, "init", None)) and callable(getattr(x, "apply", None)):
        return Combiner(
            x.init,
            x.apply,
            uses_grads=bool(getattr(x, "uses_grads", False)),
            init_params=getattr(x, "init_params", None),
        )
    if callable(x):
        return stateless(x)
    raise TypeError(
        f"a loss combiner is a Combiner, a function losses -> scalar or one of"
        f" {sorted(COMBINERS)}; got {type(x).__name__}"
    )


COMBINERS: dict[str, Callable[..., Combiner]] = {
    "sum": sum_,
    "mean": mean,
    "weighted": weighted,
    "uncertainty_weighting": uncertainty_weighting,
    "dwa": dwa,
    "rlw": rlw,
    "gradnorm": gradnorm,
    "pcgrad": pcgrad,
    "cagrad": cagrad,
    "mgda": mgda,
}


def combiner_from_config(name: str, **kwargs: Any) -> Combiner:
    """The combiner `COMBINERS[name](**kwargs)`; a wrong name lists the known ones."""
    if name not in COMBINERS:
        raise ValueError(f"unknown combiner {name!r}; known: {', '.join(sorted(COMBINERS))}")
    return COMBINERS[name](**kwargs)


sum = sum_  # noqa: A001 - `mt.losses.sum()`, the public name; nothing here calls builtin sum

__all__ = [
    "COMBINERS",
    "Combiner",
    "DwaState",
    "EmptyState",
    "GradNormState",
    "UncertaintyParams",
    "as_combiner",
    "cagrad",
    "combiner_from_config",
    "dwa",
    "dwa_weights",
    "flatten_task_grads",
    "gradnorm",
    "gram",
    "mean",
    "mgda",
    "pcgrad",
    "rlw",
    "stateless",
    "sum",
    "sum_",
    "uncertainty_weighting",
    "weighted",
]
