"""Loss balancing: GLS, IMTL-L, FAMO, STCH, ExcessMTL, DB-MTL and an EMA of any weighting.

GLS, IMTL-L, FAMO and STCH work on the losses alone; ExcessMTL and DB-MTL also read the
per-task gradients of the shared parameters (`uses_grads`); `ema` smooths the task weights
of any other combiner. Every one gives absent tasks weight exactly 0, leaves them out of
its normalisation, and returns 0 (never NaN) when no task is present.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mtjax.train.combiners import base, gradient
from mtjax.train.combiners.base import Combiner


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """Returns num / den where den > 0, else 0 (no NaN, in value or gradient)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _seen(losses: jax.Array) -> jax.Array:
    """The losses as float32 values that no gradient flows through."""
    return jax.lax.stop_gradient(losses).astype(jnp.float32)


def _debias(decay: float, t: jax.Array) -> jax.Array:
    """1 - decay^t, accurate in float32 also for decay near 1 (Adam's bias correction)."""
    if decay == 0:
        return jnp.ones_like(t)
    return -jnp.expm1(t * math.log(decay))


def _sq_norms(grads: Any, n_tasks: int, name: str) -> tuple[jax.Array, int]:
    """||g_k||^2 [K] of the per-task gradients (no gradient flows through), and P."""
    if grads is None:
        raise ValueError(f"{name} needs grads= (per-task gradients with a leading task axis)")
    g_KxK = jax.lax.stop_gradient(gradient.gram(grads))
    if g_KxK.shape[0] != n_tasks:
        raise ValueError(f"{name}: grads have {g_KxK.shape[0]} tasks, losses {n_tasks}")
    n_params = int(sum(leaf.size // n_tasks for leaf in jax.tree.leaves(grads)))
    return jnp.maximum(jnp.diagonal(g_KxK), 0.0), n_params


def gls() -> Combiner:
    """Geometric loss strategy, GLS: the geometric mean of the present tasks' losses.

    Chennupati, Sistu, Yogamani & Rawashdeh, "MultiNet++: Multi-stream feature aggregation
    and geometric loss strategy for multi-task learning", CVPR Workshops 2019.

    total = (prod_k L_k)^(1/n) over the n present tasks, computed as
    exp(mean_k log max(L_k, tiny)), so a zero loss gives total ~0 rather than NaN. The task
    weights d total / d L_k = total / (n L_k) favour the tasks with small losses.
    """

    def apply(losses, state, *, present, **extra):
        del extra
        tiny = jnp.finfo(losses.dtype).tiny
        logs_K = jnp.where(
            present, jnp.log(jnp.maximum(jnp.where(present, losses, 1.0), tiny)), 0.0
        )
        n = base.count_present(present)
        total = jnp.exp(logs_K.sum() / jnp.maximum(n, 1.0))
        return jnp.where(n > 0, total, 0.0), state

    return Combiner(base.no_state, apply)


class ImtlParams(NamedTuple):
    """IMTL-L's trainable log loss scales."""

    log_scale: jax.Array  # float32 [K], s_k, trainable


def imtl_l(init_log_scale: float = 0.0) -> Combiner:
    """IMTL-L, impartial loss balancing with a trainable log scale per task.

    Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task
    Learning", ICLR 2021 (its loss-level part).

    total = sum_k present_k (exp(s_k) L_k - s_k), with s_k trainable (`init_params`, updated
    by the trainer with the model's optimizer). For fixed L_k it is minimised at
    s_k = -log L_k, where every scaled loss exp(s_k) L_k is 1; d total / d s_k =
    exp(s_k) L_k - 1, d total / d L_k = exp(s_k). Absent tasks get no gradient.

    Args:
      init_log_scale: initial s_k of every task (0: every weight starts at 1).
    """

    def init_params(n_tasks: int) -> ImtlParams:
        return ImtlParams(log_scale=jnp.full([n_tasks], init_log_scale, jnp.float32))

    def apply(losses, state, *, present, params=None, **extra):
        del extra
        if params is None:
            raise ValueError("imtl_l needs params= (from its init_params)")
        s = params.log_scale.astype(losses.dtype)
        return jnp.sum(jnp.where(present, jnp.exp(s) * losses - s, 0.0)), state

    return Combiner(base.no_state, apply, init_params=init_params)


class FamoState(NamedTuple):
    """FAMO's memory: the weight logits, their Adam moments and the last step's losses."""

    logits: jax.Array  # float32 [K], xi: the task weights are softmax(xi)
    m: jax.Array  # float32 [K], Adam's first moment of the logits' gradient
    v: jax.Array  # float32 [K], Adam's second moment
    steps: jax.Array  # int32 [K], Adam steps taken by each logit
    last: jax.Array  # float32 [K], each task's loss at the last step it was present
    last_present: jax.Array  # bool [K], which tasks were present at the last step


def famo(lr: float = 0.025, gamma: float = 0.001, min_loss: float = 1e-8) -> Combiner:
    """FAMO: weights that even out how fast the tasks' log losses fall.

    Liu, Feng, Stone & Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023.

    With z = softmax(xi) over the present tasks and D_k = max(L_k, min_loss), the step
    descends sum_k z_k log D_k / c, c = sum_k z_k / D_k, i.e. total = sum_k w_k L_k with
    w_k = z_k / (c D_k) (weights summing to 1; the same gradient as the paper's objective,
    whose value is replaced by this convex combination of the losses). The logits learn
    from how fast each log loss falls: delta_k = log D_k(previous) - log D_k(now), and
    xi takes one Adam step (b1 0.9, b2 0.999, eps 1e-8; `lr`) on the gradient
    J_softmax(xi)^T delta + gamma xi (L2 weight decay `gamma`, as torch's Adam).

    Difference from the reference code: it re-evaluates the loss of the same batch after
    the model's update (one more forward pass) and updates xi then; here xi is updated at
    the start of the next step from that step's losses (the next batch), before they are
    weighted. So both weight step t with the loss change of the update before it, measured
    here across two batches. Only tasks present at both steps take part in an update; the
    softmax runs over the present tasks; D floors the loss where the reference adds 1e-8.

    Args:
      lr: Adam step size of the logits.
      gamma: weight decay of the logits.
      min_loss: floor of the losses before their log.
    """

    def init(n_tasks: int) -> FamoState:
        def zeros():  # one array per field: a state whose fields share a buffer cannot be
            return jnp.zeros([n_tasks], jnp.float32)  # donated to a jitted step

        return FamoState(
            logits=zeros(),
            m=zeros(),
            v=zeros(),
            steps=jnp.zeros([n_tasks], jnp.int32),
            last=zeros(),
            last_present=jnp.zeros([n_tasks], bool),
        )

    def apply(losses, state, *, present, **extra):
        del extra
        present = present.astype(bool)
        seen_K = _seen(losses)
        d_K = jnp.maximum(seen_K, min_loss)
        log_now_K = jnp.log(d_K)
        # one Adam step of the logits, from the change of the log losses since the last step
        both = present & state.last_present
        delta_K = jnp.where(both, jnp.log(jnp.maximum(state.last, min_loss)) - log_now_K, 0.0)
        z_K = base.masked_softmax(state.logits, both)
        g_K = z_K * (delta_K - jnp.sum(z_K * delta_K)) + gamma * state.logits
        steps = state.steps + both.astype(jnp.int32)
        m = jnp.where(both, 0.9 * state.m + 0.1 * g_K, state.m)
        v = jnp.where(both, 0.999 * state.v + 0.001 * g_K**2, state.v)
        t_K = jnp.maximum(steps, 1).astype(jnp.float32)
        m_hat, v_hat = m / _debias(0.9, t_K), v / _debias(0.999, t_K)
        logits = jnp.where(both, state.logits - lr * m_hat / (jnp.sqrt(v_hat) + 1e-8), state.logits)
        # weigh this step
        z_K = base.masked_softmax(logits, present)
        inv_K = jnp.where(present, z_K / d_K, 0.0)
        w_K = _safe_div(inv_K, inv_K.sum())
        new = FamoState(
            logits=logits,
            m=m,
            v=v,
            steps=steps,
            last=jnp.where(present, seen_K, state.last),
            last_present=present,
        )
        return base.weighted_total(w_K, losses, present), new

    return Combiner(init, apply)


class StchState(NamedTuple):
    """STCH's memory: this epoch's loss sums and each task's nadir (warm-up mean loss)."""

    epoch: jax.Array  # int32 [], the epoch being accumulated
    sums: jax.Array  # float32 [K], sum of this epoch's losses of each task
    counts: jax.Array  # float32 [K], number of this epoch's steps with each task
    nadir: jax.Array  # float32 [K], mean loss of the last warm-up epoch with the task (else 1)


def stch(mu: float = 1.0, warmup_epochs: int = 4, eps: float = 1e-8) -> Combiner:
    """Smooth Tchebycheff scalarisation, STCH: a soft max of normalised log losses.

    Lin, Zhang, Yang, Liu, Wang & Zhang, "Smooth Tchebycheff Scalarization for
    Multi-Objective Optimization", ICML 2024.

    total = n mu log sum_k exp(u_k / mu) over the n present tasks, with the normalised
    objectives u_k = log(L_k / N_k + eps): the paper's g_mu(x | lambda) =
    mu log sum exp(lambda_k (f_k - z*_k) / mu) with uniform preferences lambda_k = 1 (the
    factor n as in the authors' code), applied to log losses divided by a nadir point
    N_k, so the ideal point is z* = 0 in the log domain. mu -> 0 is the Tchebycheff max.
    Warm-up, as in the authors' multi-task code: for epochs < `warmup_epochs` total =
    sum_k log(L_k + eps), and N_k is task k's mean loss over the last warm-up epoch it was
    present in (1 for a task never present in warm-up, and for every task without warm-up).
    The reference code averages over epoch `warmup_epochs` itself and starts STCH an epoch
    later.

    Args:
      mu: smoothing; smaller is closer to the max over tasks.
      warmup_epochs: epochs of summed log losses before STCH.
      eps: added inside the logs.
    """
    if mu <= 0:
        raise ValueError(f"stch: mu must be > 0, got {mu}")

    def init(n_tasks: int) -> StchState:
        return StchState(
            epoch=jnp.zeros([], jnp.int32),
            sums=jnp.zeros([n_tasks], jnp.float32),
            counts=jnp.zeros([n_tasks], jnp.float32),
            nadir=jnp.ones([n_tasks], jnp.float32),
        )

    def apply(losses, state, *, present, epoch, **extra):
        del extra
        epoch = jnp.asarray(epoch, jnp.int32)
        new_epoch = epoch != state.epoch
        finished = new_epoch & (state.epoch < warmup_epochs) & (state.counts > 0)
        mean_K = state.sums / jnp.maximum(state.counts, 1.0)
        nadir = jnp.where(finished & (mean_K > 0), mean_K, state.nadir)
        sums = jnp.where(new_epoch, 0.0, state.sums) + jnp.where(present, _seen(losses), 0.0)
        counts = jnp.where(new_epoch, 0.0, state.counts) + present.astype(jnp.float32)
        safe_K = jnp.where(present, losses, 1.0)
        warm = jnp.sum(jnp.where(present, jnp.log(safe_K + eps), 0.0))
        u_K = jnp.where(present, jnp.log(safe_K / nadir.astype(losses.dtype) + eps), 0.0)
        top = jax.lax.stop_gradient(jnp.max(jnp.where(present, u_K, -jnp.inf)))
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        e_K = jnp.where(present, jnp.exp((u_K - top) / mu), 0.0)
        n = base.count_present(present)
        smooth = n * (mu * jnp.log(jnp.maximum(e_K.sum(), 1e-30)) + top)
        total = jnp.where(n > 0, jnp.where(epoch < warmup_epochs, warm, smooth), 0.0)
        return total, StchState(epoch=epoch, sums=sums, counts=counts, nadir=nadir)

    return Combiner(init, apply)


class ExcessState(NamedTuple):
    """ExcessMTL's memory: the task weights, the squared-gradient sums and first risks."""

    weights: jax.Array  # float32 [K], the task weights (sum K while every task is present)
    sq_sum: jax.Array  # float32 [K], sum over steps of ||g_k||^2 / P (AdaGrad, per task)
    initial: jax.Array  # float32 [K], each task's excess risk the first time it was present
    has_initial: jax.Array  # bool [K], whether `initial` is recorded


def excess_mtl(step_size: float = 0.01) -> Combiner:
    """ExcessMTL: weights moved towards the tasks with the largest estimated excess risk.

    He, Zhou, Zhang, Yun, Xu, Zeng, Chilimbi & Zhao, "Robust Multi-Task Learning with
    Excess Risks", ICML 2024.

    Each task's excess risk is estimated as g_k^T H_k^-1 g_k with the AdaGrad diagonal
    H_k = sqrt(sum over past steps of g_k^2 + 1e-7); the weights take an exponentiated-
    gradient step towards the tasks whose risk, relative to their first one, is highest:
    w_k <- w_k exp(step_size r_k / r_k(0)), renormalised (here over present tasks, to
    their previous sum; the reference to sum K). The step's total is sum_k w_k L_k with
    the updated weights scaled to sum to the number of present tasks; on a task's first
    step its weight is not updated.

    Difference from the reference code: its H_k is per parameter, a [K, P] buffer; the
    state here is made by `init(n_tasks)` without the parameters' shapes, so H_k is one
    number per task, the root of the mean squared gradient, sqrt(sum_t ||g_k,t||^2 / P +
    1e-7) (isotropic AdaGrad): the risk is ||g_k||^2 / H_k, equal to the reference's when
    all parameters have equal accumulated squares.

    torchjd's ExcessMTL differs again: it updates the weights on the first step too and
    normalises them to sum to 1, and its H_k is per parameter (`benchmarks/parity.py`).

    Args:
      step_size: the exponentiated-gradient step (the reference's robust_step_size).
    """

    def init(n_tasks: int) -> ExcessState:
        return ExcessState(
            weights=jnp.ones([n_tasks], jnp.float32),
            sq_sum=jnp.zeros([n_tasks], jnp.float32),
            initial=jnp.zeros([n_tasks], jnp.float32),
            has_initial=jnp.zeros([n_tasks], bool),
        )

    def apply(losses, state, *, present, grads=None, **extra):
        del extra
        sq_K, n_params = _sq_norms(grads, losses.shape[0], "excess_mtl")
        sq_sum = state.sq_sum + jnp.where(present, sq_K / n_params, 0.0)
        risk_K = sq_K / jnp.sqrt(sq_sum + 1e-7)
        update = present & state.has_initial
        initial = jnp.where(present & ~state.has_initial, risk_K, state.initial)
        stepped = state.weights * jnp.exp(step_size * _safe_div(risk_K, initial))
        stepped = jnp.where(update, stepped, state.weights)
        # renormalise the present tasks to their previous total
        before, after = (jnp.sum(jnp.where(present, w, 0.0)) for w in (state.weights, stepped))
        weights = jnp.where(present, stepped * _safe_div(before, after), state.weights)
        used = jnp.where(present, weights, 0.0)
        used = used * _safe_div(base.count_present(present), used.sum())
        new_state = ExcessState(
            weights=weights, sq_sum=sq_sum, initial=initial, has_initial=state.has_initial | present
        )
        return base.weighted_total(used, losses, present), new_state

    return Combiner(init, apply, uses_grads=True)


class DbMtlState(NamedTuple):
    """DB-MTL's memory: an EMA of the norm of each task's log-loss gradient."""

    norm_ema: jax.Array  # float32 [K], EMA of ||g_k|| / (L_k + eps), not bias-corrected
    steps: jax.Array  # int32 [K], steps with each task, for the bias correction


def db_mtl(beta: float = 0.9, eps: float = 1e-8) -> Combiner:
    """DB-MTL: log losses, with every task's gradient scaled to the largest norm.

    Lin, Jiang, Ye, Zhang, Chen, Chen, Liu & Kwok, "Dual-Balancing for Multi-Task
    Learning", arXiv 2308.12029, 2023.

    Loss balance: each task's loss is log-transformed, log(L_k + eps), whose gradient is
    h_k = g_k / (L_k + eps). Gradient balance: u_k is an EMA (decay `beta`) of ||h_k||, and
    each log-loss gradient is scaled to the largest: alpha_k = max_j u_j / (u_k + 1e-8),
    over present tasks. The combined gradient sum_k alpha_k h_k is sum_k a_k g_k with
    a_k = alpha_k / (L_k + eps), so total = sum_k stop_gradient(a_k) L_k.

    Differences from the reference code: it keeps an EMA of the gradients themselves
    (a [K, P] buffer, which `init(n_tasks)` cannot size) and combines those; here the
    current gradients are combined and the EMA is of their norms. The EMA is bias-corrected
    per task (u_k / (1 - beta^n_k) after n_k steps with task k), so tasks that start late
    compare fairly; the reference's uncorrected buffer makes its first steps smaller.

    Args:
      beta: EMA decay of the gradient norms.
      eps: added to each loss before its log.
    """

    def init(n_tasks: int) -> DbMtlState:
        return DbMtlState(
            norm_ema=jnp.zeros([n_tasks], jnp.float32),
            steps=jnp.zeros([n_tasks], jnp.int32),
        )

    def apply(losses, state, *, present, grads=None, **extra):
        del extra
        sq_K, _ = _sq_norms(grads, losses.shape[0], "db_mtl")
        inv_K = 1.0 / (_seen(losses) + eps)
        norm_ema = jnp.where(
            present, beta * state.norm_ema + (1 - beta) * jnp.sqrt(sq_K) * inv_K, state.norm_ema
        )
        steps = state.steps + present.astype(jnp.int32)
        u_K = norm_ema / _debias(beta, jnp.maximum(steps, 1).astype(jnp.float32))
        top = jnp.max(jnp.where(present, u_K, 0.0))
        a_K = jnp.where(present, top / (u_K + 1e-8) * inv_K, 0.0)
        return base.weighted_total(a_K, losses, present), DbMtlState(norm_ema, steps)

    return Combiner(init, apply, uses_grads=True)


class EmaState(NamedTuple):
    """`ema`'s memory: the inner combiner's state and the smoothed task weights."""

    inner: Any  # the inner combiner's state
    weights: jax.Array  # float32 [K], EMA of the inner task weights over present steps
    seen: jax.Array  # bool [K], whether a task has been present (its EMA started)


def ema(combiner: Combiner, decay: float = 0.9) -> Combiner:
    """An EMA over steps of any combiner's task weights, as CR-MOGM smooths them.

    Zhou, Zhang, Jiang, Zhong, Gu & Zhu, "On the Convergence of Stochastic Multi-Objective
    Gradient Manipulation and Beyond", NeurIPS 2022.

    The inner weights are w_k = d total_inner / d L_k (the exact weights of every combiner
    here: `jax.grad` of the inner `apply`, at the losses with no gradient); the state keeps
    lambda_k <- decay lambda_k + (1 - decay) w_k on the steps task k is present (lambda_k =
    w_k on its first), and total = sum_k stop_gradient(lambda_k) L_k over present tasks.
    The inner combiner's own trainable `params` (if any) still get its gradient, through a
    term of value 0 (t_inner - stop_gradient(t_inner)) that does not depend on the losses.

    Args:
      combiner: the inner Combiner; its `uses_grads` and `init_params` carry over.
      decay: weight of the past in the average; 0 is the inner combiner itself.
    """
    if not 0 <= decay < 1:
        raise ValueError(f"ema: decay must be in [0, 1), got {decay}")

    def init(n_tasks: int) -> EmaState:
        return EmaState(
            inner=combiner.init(n_tasks),
            weights=jnp.zeros([n_tasks], jnp.float32),
            seen=jnp.zeros([n_tasks], bool),
        )

    def apply(losses, state, *, present, **extra):
        def inner(seen_K):
            return combiner.apply(seen_K, state.inner, present=present, **extra)

        (t_inner, inner_state), w_K = jax.value_and_grad(inner, has_aux=True)(
            jax.lax.stop_gradient(losses)
        )
        w_K = jax.lax.stop_gradient(w_K).astype(jnp.float32)
        smooth_K = jnp.where(state.seen, decay * state.weights + (1 - decay) * w_K, w_K)
        weights = jnp.where(present, smooth_K, state.weights)
        total = base.weighted_total(weights, losses, present)
        total = total + (t_inner - jax.lax.stop_gradient(t_inner)).astype(total.dtype)
        return total, EmaState(inner=inner_state, weights=weights, seen=state.seen | present)

    return Combiner(init, apply, uses_grads=combiner.uses_grads, init_params=combiner.init_params)
