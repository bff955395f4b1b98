"""Parity of mtjax's gradient combiners with torchjd 0.18 and with LibMTL's published formulas.

Run: `python benchmarks/parity.py [--out FILE]`. Needs torch and torchjd (`pip install
torchjd`), and cvxpy, clarabel and ecos for torchjd's CAGrad and NashMTL; none is a dependency
of mtjax. Each method gets the same per-task gradient matrices [K, P] (fixed seeds; K = 2..5,
P = 50..500; random, conflicting, near-parallel and mixed-scale cases). mtjax runs in float32
through the public `init/apply/aggregate` with `grads={"w": G}`; the references run in float64
on the same float32 values. One JSON line per method: the largest relative difference
||d_mtjax - d_ref|| / ||d_ref|| of the shared gradient over its cases. Where a convention
differs on purpose (a scale, a normalisation), the mtjax side is mapped to the reference's
convention first and the note names the map. Methods torchjd lacks are compared with small
numpy transcriptions of the papers' / LibMTL's update rules. About 2 CPU-minutes (most of it
compiling one jitted mtjax step per method and matrix shape).
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torchjd import aggregation as tjd
from torchjd.linalg import QuadprogProjector

import mtjax as mt

torch.set_default_dtype(torch.float64)


# ----------------------------------------------------------------------------------------
# Cases


def _cases() -> list[tuple[str, np.ndarray]]:
    """(name, G float32 [K, P]) pairs."""
    rng = np.random.default_rng(14)
    out = []
    for k, p in ((2, 50), (3, 200), (4, 120), (5, 500)):
        out.append((f"random-k{k}-p{p}", rng.normal(size=(k, p))))
    for k, p in ((2, 80), (4, 300)):
        g = rng.normal(size=(k, p))
        g[1] = -0.8 * g[0] + 0.3 * rng.normal(size=p)  # a strong conflict
        out.append((f"conflicting-k{k}-p{p}", g))
    for k, p in ((2, 60), (3, 150), (5, 100)):
        base = rng.normal(size=p)
        g = np.stack([(1.0 + i) * base + 0.05 * rng.normal(size=p) for i in range(k)])
        out.append((f"near-parallel-k{k}-p{p}", g))
    g = rng.normal(size=(4, 250)) * np.array([10.0, 1.0, 0.1, 3.0])[:, None]
    out.append(("mixed-scale-k4-p250", g))
    return [(n, g.astype(np.float32)) for n, g in out]


CASES = _cases()
KEY = jax.random.key(0)


# ----------------------------------------------------------------------------------------
# The two sides


_STEPS: dict[int, tuple] = {}  # id(combiner) -> (combiner, its jitted step)


def _jitted_step(comb):
    """One jitted mtjax step: (losses, state, grads, params, key, step, epoch) -> (d, state)."""
    if id(comb) not in _STEPS:

        def step(losses, state, grads, params, key, step, epoch):
            kw = dict(present=jnp.ones(losses.shape, bool), key=key, step=step, epoch=epoch)
            if comb.aggregate is not None:
                d, state, _ = comb.aggregate(grads, state, losses=losses, **kw)
                return d["w"], state

            def total(ls):
                return comb.apply(ls, state, grads=grads, params=params, **kw)

            w, state = jax.grad(total, has_aux=True)(losses)
            return w @ grads["w"], state

        _STEPS[id(comb)] = (comb, jax.jit(step))
    return _STEPS[id(comb)][1]


def mtjax_steps(comb, g_steps, losses_steps=None, *, epochs=False, params=None):
    """mtjax's shared gradient after each step of `g_steps` [S, K, P], from a fresh state.

    One jitted step per combiner (`_jitted_step`), compiled once per task count and size.

    epochs: one epoch per step (epoch = step) instead of every step in epoch 0.
    params: the combiner's trainable parameters (default: its `init_params`).
    """
    k = g_steps[0].shape[0]
    try:
        state = comb.init(k)
    except ValueError:  # moco: a state shaped like the shared parameters
        state = comb.init(k, shared={"w": jnp.zeros(g_steps[0].shape[1])})
    if params is None and comb.init_params:
        params = comb.init_params(k)
    step, out = _jitted_step(comb), []
    for s, g in enumerate(g_steps):
        losses = losses_steps[s] if losses_steps is not None else np.ones(k)
        d, state = step(
            jnp.asarray(losses, jnp.float32),
            state,
            {"w": jnp.asarray(g)},
            params,
            jax.random.fold_in(KEY, s),
            jnp.int32(s),
            jnp.int32(s if epochs else 0),
        )
        out.append(np.asarray(d, np.float64))
    return out


def torchjd_steps(agg, g_steps):
    """torchjd's aggregation of each matrix of `g_steps` (one stateful aggregator)."""
    return [agg(torch.from_numpy(g.astype(np.float64))).numpy() for g in g_steps]


def rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def line(method, reference, diffs, note="") -> dict:
    worst = max(diffs) if diffs else None
    return {
        "method": method,
        "reference": reference,
        "cases": len(diffs),
        "max_rel_diff": None if worst is None else float(f"{worst:.3g}"),
        "within_1e-4": bool(diffs) and worst <= 1e-4,
        "note": note,
    }


def compare(method, reference, make_agg, *, scale=None, keep=None, steps=1, opts=None, note=""):
    """One JSON line: `method` (mtjax name) against `make_agg(K)` on the selected cases.

    scale: (G, K) -> factor applied to mtjax's direction before comparing.
    """
    diffs = []
    comb = mt.losses.combiner_from_config(method, **(opts or {}))
    for _, g in CASES:
        k = g.shape[0]
        if keep is not None and not keep(g):
            continue
        seq = [g * (1.0 + 0.1 * s) for s in range(steps)]
        ours = mtjax_steps(comb, seq)
        theirs = torchjd_steps(make_agg(k), seq)
        f = 1.0 if scale is None else scale(g.astype(np.float64), k)
        diffs += [rel(f * o, t) for o, t in zip(ours, theirs)]
    return line(method, reference, diffs, note)


def _default_gap(method, make) -> str:
    """The largest relative difference with torchjd's default construction, as words."""
    comb = mt.losses.combiner_from_config(method)
    worst = max(
        rel(mtjax_steps(comb, [g])[0], t) for _, g in CASES for t in torchjd_steps(make(), [g])
    )
    return f"max_rel_diff {worst:.2g} with the default"


def _sdmgrad_default_gap() -> str:
    return _default_gap("sdmgrad", lambda: tjd.GramianWeightedAggregator(tjd.SDMGradWeighting()))


def torchjd_lines() -> list[dict]:
    two = lambda g: g.shape[0] == 2  # noqa: E731
    return [
        compare("sum", "torchjd.Sum", lambda k: tjd.Sum()),
        compare("mean", "torchjd.Mean", lambda k: tjd.Mean()),
        compare(
            "upgrad",
            "torchjd.UPGrad",
            lambda k: tjd.UPGrad(projector=QuadprogProjector(reg_eps=1e-12)),
            note="torchjd's projector with reg_eps 1e-12: its default adds 1e-4 to the"
            f" normalised Gramian's diagonal, {_default_gap('upgrad', tjd.UPGrad)} here",
        ),
        compare(
            "dualproj",
            "torchjd.DualProj",
            lambda k: tjd.DualProj(projector=QuadprogProjector(reg_eps=1e-12)),
            note="torchjd's projector with reg_eps 1e-12: its default adds 1e-4 to the"
            f" normalised Gramian's diagonal, {_default_gap('dualproj', tjd.DualProj)} here",
        ),
        compare(
            "mgda",
            "torchjd.MGDA",
            lambda k: tjd.MGDA(epsilon=1e-12, max_iters=3000),
            note="torchjd's Frank-Wolfe run to epsilon 1e-12 / 3000 iterations (its defaults,"
            " 1e-3 / 100, stop early); it converges sublinearly (1.7e-4 after 20000), mtjax"
            " solves exactly (Wolfe's active set)",
        ),
        compare(
            "cagrad",
            "torchjd.CAGrad",
            lambda k: tjd.CAGrad(c=0.5),
            scale=lambda g, k: 1.0 + 0.5**2,
            note="mtjax x (1 + c^2): mtjax divides by 1 + c^2 as the paper's code does, torchjd"
            " does not (c = 0.5); torchjd's cvxpy/Clarabel solve is accurate to ~1e-6",
        ),
        compare("imtl_g", "torchjd.IMTLG", lambda k: tjd.IMTLG()),
        compare(
            "aligned_mtl",
            "torchjd.AlignedMTL",
            lambda k: tjd.AlignedMTL(),
            scale=lambda g, k: 1.0 / k,
            note="mtjax / K: mtjax sums the aligned gradients (unit pre-weights, as the paper),"
            " torchjd averages them (pref_vector 1/K); scale 'min' on both. The largest gap is"
            " near-parallel-k5, where G's smallest eigenvalue is 3e-5 of its largest: mtjax's"
            " float32 Gram rounds by ~1e-7 of the largest, 3e-3 of the smallest, whose square"
            " root scales the update; the other cases agree to 4e-5",
        ),
        compare("config", "torchjd.ConFIG", lambda k: tjd.ConFIG()),
        compare(
            "krum",
            "torchjd.Krum",
            lambda k: tjd.Krum(n_byzantine=1),
            keep=lambda g: g.shape[0] >= 4,
            note="f = 1, one selected; K >= 4 only (torchjd needs K >= f + 3)",
        ),
        compare(
            "trimmed_mean",
            "torchjd.TrimmedMean",
            lambda k: tjd.TrimmedMean(trim_number=1),
            keep=lambda g: g.shape[0] >= 3,
            note="trim 1; K >= 3 only (torchjd needs K >= 2 trim + 1)",
        ),
        compare(
            "pcgrad",
            "torchjd.PCGrad",
            lambda k: tjd.PCGrad(),
            keep=two,
            note="K = 2 only: with more tasks each task's projection order is a random draw"
            " (torch.randperm vs a jax key), which cannot match draw for draw",
        ),
        compare(
            "gradvac",
            "torchjd.GradVac",
            lambda k: tjd.GradVac(beta=0.5),
            keep=two,
            steps=3,
            note="K = 2 only (random orders otherwise); 3 steps each (the targets' EMA carries"
            " over), beta 0.5",
        ),
        compare(
            "nash_mtl",
            "torchjd.NashMTL",
            lambda k: tjd.NashMTL(n_tasks=k, max_norm=0.0, optim_niter=200),
            note="the gap is mixed-scale-k4 alone, where torchjd's CCP stops far from the"
            " solution (|G a - 1/a| max(a) 55 against mtjax's 9e-5); the other cases agree to"
            " 1.2e-5. Norm clipping off (max_norm 0; mtjax leaves it to the optimizer); torchjd's"
            " CCP (cvxpy/ECOS) with up to 200 iterations (its default 20 stops short: 0.84)"
            " against mtjax's Newton solve of G a = 1/a",
        ),
        compare(
            "fairgrad",
            "torchjd.FairGrad",
            lambda k: tjd.FairGrad(alpha=1.0),
            note="alpha 1; torchjd solves G w = w^-1 by scipy least_squares",
        ),
        compare(
            "modo",
            "torchjd.MoDoWeighting",
            lambda k: tjd.GramianWeightedAggregator(tjd.MoDoWeighting(gamma=0.1, rho=0.0)),
            steps=3,
            note="gamma 0.1, rho 0 (torchjd's default rho is 0.1); 3 steps each",
        ),
        compare(
            "sdmgrad",
            "torchjd.SDMGradWeighting",
            lambda k: tjd.GramianWeightedAggregator(
                tjd.SDMGradWeighting(lr=0.1, momentum=0.5, n_iter=2000, lambda_=0.3)
            ),
            note="lambda 0.3; torchjd's projected momentum descent (the paper's inner loop) with"
            " lr 0.1 and 2000 iterations to converge; mtjax solves the QP exactly. With torchjd's"
            f" defaults (lr 10, 20 iterations) {_sdmgrad_default_gap()}: lr 10 does not"
            " converge on these Gramians (it ends at a vertex, objective 2.4x the minimum on"
            " random-k3-p200)",
        ),
        graddrop_line(),
        {
            "method": "rlw",
            "reference": "torchjd.Random",
            "cases": 0,
            "max_rel_diff": None,
            "within_1e-4": False,
            "note": "skipped: the weights are a fresh random draw each step (torch.randn vs a"
            " jax key); mtjax's weights are K x softmax(z) (sum K, the scale of sum), torchjd's"
            " softmax(z) (sum 1)",
        },
        excess_line(),
    ]


def graddrop_line() -> dict:
    """GradDrop on sign-consistent cases, where the kept mask is no random draw."""
    diffs = []
    rng = np.random.default_rng(3)
    comb = mt.losses.graddrop()
    for _, g in CASES:
        sign = np.sign(rng.normal(size=g.shape[1]))
        g1 = (np.abs(g) * sign).astype(np.float32)  # every task agrees on each sign
        ours = mtjax_steps(comb, [g1])
        theirs = torchjd_steps(tjd.GradDrop(), [g1])
        diffs += [rel(o, t) for o, t in zip(ours, theirs)]
    return line(
        "graddrop",
        "torchjd.GradDrop",
        diffs,
        "sign-consistent cases only (purity 0 or 1: the kept mask does not depend on the"
        " uniform draw, which cannot match draw for draw otherwise); leak 0",
    )


def excess_line() -> dict:
    diffs = []
    comb = mt.losses.excess_mtl(step_size=1.0)
    for _, g in CASES:
        seq = [g * (1.0 + 0.1 * s) for s in range(3)]
        ours = mtjax_steps(comb, seq)
        theirs = torchjd_steps(tjd.ExcessMTL(robust_step_size=1.0), seq)
        k = g.shape[0]
        diffs += [rel(o / k, t) for o, t in zip(ours, theirs)]
    return line(
        "excess_mtl",
        "torchjd.ExcessMTL",
        diffs,
        "intended differences, not a parity check: mtjax's AdaGrad H_k is one number per task"
        " (a [K, P] buffer cannot be sized by init(n_tasks)), torchjd's is per parameter;"
        " mtjax keeps the weights on the first step and they sum to K (compared / K), as"
        " LibMTL's ExcessMTL does, torchjd updates them on the first step too and they sum"
        " to 1; step size 1, 3 steps",
    )


# ----------------------------------------------------------------------------------------
# Methods torchjd lacks: numpy transcriptions of the papers' / LibMTL's rules


def _project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection on the simplex, by bisection on the threshold (float64)."""
    lo, hi = v.min() - 1.0, v.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.maximum(v - mid, 0.0).sum() > 1.0 else (lo, mid)
    return np.maximum(v - 0.5 * (lo + hi), 0.0)


def moco_reference(g_steps, beta=0.5, gamma=0.1, rho=0.0):
    """MoCo, Fernando et al. 2023, Algorithm 1 with constant step sizes."""
    k, p = g_steps[0].shape
    y, lam, out = np.zeros((k, p)), np.full(k, 1.0 / k), []
    for g in g_steps:
        y = y - beta * (y - g)
        lam = _project_simplex(lam - gamma * (y @ y.T + rho * np.eye(k)) @ lam)
        out.append(lam @ y)
    return out


def dwa_reference(epoch_losses, temperature=2.0):
    """DWA, Liu et al. 2019 (LibMTL's DWA): w = K softmax(r / T), r = L(t-1) / L(t-2)."""
    out = []
    for t, losses in enumerate(epoch_losses):
        k = len(losses)
        if t < 2:
            out.append(np.ones(k))
            continue
        r = epoch_losses[t - 1] / epoch_losses[t - 2]
        e = np.exp(r / temperature)
        out.append(k * e / e.sum())
    return out


def gls_reference(losses):
    """GLS (LibMTL's GLS): total = (prod_k L_k)^(1/K), so w_k = total / (K L_k)."""
    total = np.prod(losses) ** (1.0 / len(losses))
    return total / (len(losses) * losses)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def famo_reference(losses_steps, lr=0.025, gamma=1e-3, min_loss=1e-8):
    """FAMO's weights (Liu et al. 2023, LibMTL's FAMO), xi updated at the start of each step.

    w = z / (c D), z = softmax(xi), D = L, c = sum z / D; xi takes one Adam step (torch's,
    weight decay gamma) on J_softmax(xi)^T delta, delta = log D(prev) - log D(now).
    """
    k = losses_steps.shape[1]
    xi, m, v, out = np.zeros(k), np.zeros(k), np.zeros(k), []
    for t, losses in enumerate(losses_steps):
        d_now = np.maximum(losses, min_loss)
        if t > 0:
            delta = np.log(np.maximum(losses_steps[t - 1], min_loss)) - np.log(d_now)
            z = _softmax(xi)
            grad = z * (delta - z @ delta) + gamma * xi
            m, v = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad**2
            m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
            xi = xi - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        z = _softmax(xi)
        out.append(z / ((z / d_now).sum() * d_now))
    return out


def stch_reference(losses, mu=1.0, eps=1e-20):
    """STCH after warm-up with nadir 1 (LibMTL's STCH): d/dL of K mu log sum exp(u / mu)."""
    u = np.log(losses + eps)
    return len(losses) * _softmax(u / mu) / (losses + eps)


def db_mtl_reference(g, losses, beta=0.9):
    """DB-MTL's first step (LibMTL's DB_MTL): buffer (1 - beta) h_k, h_k = g_k / (L_k + 1e-8)."""
    buffer = (1 - beta) * g / (losses[:, None] + 1e-8)
    norms = np.linalg.norm(buffer, axis=1)
    return (norms.max() / (norms + 1e-8)) @ buffer


def formula_lines() -> list[dict]:
    rng = np.random.default_rng(7)
    moco_d, dwa_d, gls_d, famo_d, stch_d, db_d, imtl_d = [], [], [], [], [], [], []
    moco, dwa, gls, famo = mt.losses.moco(), mt.losses.dwa(), mt.losses.gls(), mt.losses.famo()
    stch, db_mtl = mt.losses.stch(warmup_epochs=0, eps=1e-20), mt.losses.db_mtl(beta=0.9)
    imtl_l = mt.losses.imtl_l()
    for _, g in CASES:
        k = g.shape[0]
        seq = [(g * (1.0 + 0.1 * s)).astype(np.float32) for s in range(4)]
        ours = mtjax_steps(moco, seq)
        theirs = moco_reference([s.astype(np.float64) for s in seq])
        moco_d += [rel(o, t) for o, t in zip(ours, theirs)]
        losses = rng.uniform(0.2, 3.0, size=(4, k)).astype(np.float32)
        ours = mtjax_steps(dwa, seq, losses, epochs=True)
        theirs = [w @ s.astype(np.float64) for w, s in zip(dwa_reference(losses), seq)]
        dwa_d += [rel(o, t) for o, t in zip(ours, theirs)]
        ours = mtjax_steps(gls, seq[:1], losses[:1])
        l64 = losses.astype(np.float64)
        gls_d.append(rel(ours[0], gls_reference(l64[0]) @ g))
        ours = mtjax_steps(famo, seq, losses)
        theirs = [w @ s.astype(np.float64) for w, s in zip(famo_reference(l64), seq)]
        famo_d += [rel(o, t) for o, t in zip(ours, theirs)]
        ours = mtjax_steps(stch, seq[:1], losses[:1])
        stch_d.append(rel(ours[0], stch_reference(l64[0]) @ g))
        ours = mtjax_steps(db_mtl, seq[:1], losses[:1])
        db_d.append(rel((1 - 0.9) * ours[0], db_mtl_reference(g.astype(np.float64), l64[0])))
        log_scale = rng.normal(size=k).astype(np.float32)
        params = imtl_l.init_params(k)._replace(log_scale=jnp.asarray(log_scale))
        ours = mtjax_steps(imtl_l, seq[:1], losses[:1], params=params)
        imtl_d.append(rel(ours[0], np.exp(log_scale.astype(np.float64)) @ g))
    return [
        line(
            "moco",
            "numpy: Fernando et al. 2023, Algorithm 1",
            moco_d,
            "4 steps each, beta 0.5, gamma 0.1, rho 0 (LibMTL's defaults). Against the paper's"
            " rule; LibMTL's MoCo differs on purpose: it rescales g_k to g_k / ||g_k|| L_k,"
            " decays beta and gamma as 1 / sqrt(t) and takes a softmax where the paper projects"
            " on the simplex",
        ),
        line(
            "dwa",
            "numpy: Liu et al. 2019 / LibMTL DWA",
            dwa_d,
            "one step per epoch, 4 epochs (weights 1 in the first two), T 2",
        ),
        line("gls", "numpy: Chennupati et al. 2019 / LibMTL GLS", gls_d, "one step"),
        line(
            "famo",
            "numpy: Liu et al. 2023 / LibMTL FAMO",
            famo_d,
            "4 steps, lr 0.025, gamma 1e-3; the reference's rules on mtjax's schedule: xi takes"
            " its Adam step at the start of the next step from that batch's losses (LibMTL"
            " re-evaluates the same batch after the update, one more forward pass)",
        ),
        line(
            "stch",
            "numpy: Lin et al. 2024 / LibMTL STCH",
            stch_d,
            "after warm-up with nadir 1 (warmup_epochs 0), mu 1, eps 1e-20 as LibMTL; one step",
        ),
        line(
            "db_mtl",
            "numpy: Lin et al. 2023 / LibMTL DB_MTL",
            db_d,
            "first step, beta 0.9; mtjax x (1 - beta): LibMTL's EMA buffer of the log-loss"
            " gradients starts at 0 without bias correction, mtjax's EMA of their norms is"
            " bias-corrected; later steps differ on purpose (mtjax combines the current"
            " gradients, LibMTL its buffer)",
        ),
        line(
            "imtl_l",
            "numpy: Liu et al. 2021 / LibMTL IMTL (loss part)",
            imtl_d,
            "weights exp(s_k) at random log scales s; one step",
        ),
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the JSON lines to this file")
    args = parser.parse_args(argv)
    rows = torchjd_lines() + formula_lines()
    text = "\n".join(json.dumps(r) for r in rows)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
