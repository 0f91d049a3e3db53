#!/usr/bin/python3
"""Independent float64 reference for `netmoments analyze --method two-stage` at ImageNet scale (issue 15).

    /usr/bin/python3 scripts/reference-two-stage.py MODEL.onnx INPUT.npy SIGMA OUT.json [--arch alexnet|vgg11] [--compare NETMOMENTS.json]

Rebuilds the torchvision architecture (AlexNet or VGG-11, as scripts/make-imagenet-models.py makes
them), loads the weights from the ONNX file's initializers by name (torchvision's state_dict names,
which the export keeps), converts the model to float64 and computes the two-stage linearization at
the last ReLU (fc7, p = 4096) at the noise mean x, for isotropic noise sigma on the whole image:

    z(x) = W7 relu(W6 f(x) + b6) + b7   (the ReLU's input, f the convolutional features)
    A    = dz/dx (p x n)                 by reverse mode: PyTorch autograd, one batched backward
                                         pass per block of rows (the batch holds copies of x); in
                                         float32 by default (float64 convolutions in PyTorch's CPU
                                         kernels cost ~20x more: --rows float64 for all of it), with
                                         the first block also computed in float64 and the largest
                                         difference printed (and written as rowsCheck)
    S    = sigma^2 A A^T                 float64 GEMM (torch's BLAS) over blocks of rows (A held on disk
                                         as a float64 memmap; --rows-file reuses one an earlier run left)
    B    = dg/dy at y = relu(z(x))       by reverse mode too (for AlexNet / VGG it is fc8's weight)
    m    = z(x), s = sqrt(diag S), a = m / s,   c2 = g(relu(m)) - B relu(m)

and the moments of g = B relu(z) + c2, z ~ N(m, S):

    E[relu(z_u)]           = m_u Phi(a_u) + s_u phi(a_u)                     (Bibi et al. 2018, Theorem 1)
    E[relu(z_u)^2]         = (m_u^2 + s_u^2) Phi(a_u) + m_u s_u phi(a_u)
    E[relu(z_u) relu(z_v)] = int_0^inf t E[relu(z_v) | z_u = t] N(t; m_u, s_u^2) dt, u != v,

the last by Gauss-Legendre quadrature on t = m_u + s_u x, x in [-a_u, 8] (a different route from
netmoments' Rosenbaum / Genz closed form: E[relu(z_v) | z_u = t] is the Theorem 1 mean of the
conditional Gaussian). Units surely on or off (|a| > 8) enter exactly: relu(z) = z or 0. Then
mean = B E[relu(z)] + c2 and variance_i = sum_uv B_iu K_uv B_iv with K = E[relu relu^T] - E E^T.

Writes OUT.json {mean, variance, seconds}; with --compare, prints the largest relative differences
from a netmoments analyze report (mean relative to the output's sd scale, variance relative) and
exits 1 when either exceeds 1e-3. Python and this script are never needed by the product or its tests.
"""
import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torchvision

TAIL = 8.0  # |a| beyond this: the unit is surely on or off (Phi(-8) = 6e-16)
NODES = 64  # Gauss-Legendre nodes of the pair quadrature


def load_model(path, arch):
    model = {"alexnet": torchvision.models.alexnet, "vgg11": torchvision.models.vgg11}[arch](weights=None)
    proto = onnx.load(path)
    weights = {i.name: torch.from_numpy(onnx.numpy_helper.to_array(i).copy()) for i in proto.graph.initializer}
    # the exporter keeps one copy of identical initializers and names the others through Identity
    # nodes (VGG-11: its zero-initialised conv biases, 'features.8.bias' = Identity('features.6.bias'))
    aliases = {n.output[0]: n.input[0] for n in proto.graph.node if n.op_type == "Identity"}
    for name, source in aliases.items():
        while source not in weights and source in aliases:
            source = aliases[source]
        if name not in weights and source in weights:
            weights[name] = weights[source]
    state = model.state_dict()
    missing = [k for k in state if k not in weights]
    if missing:
        sys.exit(f"{path}: no initializer for {missing[:4]}")
    model.load_state_dict({k: weights[k] for k in state}, strict=True)
    return model.double().eval()


def split_parts(model):
    """bottom: x -> fc7's pre-activation z; top: relu(z) -> logits (fc7's ReLU is the last ReLU)."""
    cls = list(model.classifier)
    relus = [i for i, m in enumerate(cls) if isinstance(m, torch.nn.ReLU)]
    k = relus[-1]

    def bottom(x):
        h = torch.flatten(model.avgpool(model.features(x)), 1)
        return torch.nn.Sequential(*cls[:k])(h)

    top = torch.nn.Sequential(*cls[k + 1 :])
    return bottom, top


def phi(x):
    return torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def Phi(x):
    return 0.5 * torch.erfc(-x / math.sqrt(2))


def relu_mean(m, s):
    """E[relu(N(m, s^2))], s >= 0 (Theorem 1; relu(m) at s = 0)."""
    safe = torch.where(s > 0, s, torch.ones_like(s))
    a = m / safe
    return torch.where(s > 0, m * Phi(a) + safe * phi(a), torch.clamp(m, min=0))


def relu_moments(m, S, B, c2):
    """Mean and variance of g = B relu(z) + c2, z ~ N(m, S) (file comment); also the unit counts."""
    p = m.numel()
    s = torch.sqrt(torch.clamp(torch.diagonal(S), min=0))
    a = torch.where(s > 0, m / torch.where(s > 0, s, torch.ones_like(s)), torch.sign(m) * math.inf)
    Er = relu_mean(m, s)
    mean = B @ Er + c2

    # K = E[relu relu^T] - E E^T: decided units exactly, uncertain pairs by quadrature
    on = a > TAIL
    unc = (a.abs() <= TAIL).nonzero().flatten()
    K = torch.zeros(p, p, dtype=torch.float64)
    onI = on.nonzero().flatten()
    # both on: relu = z, covariance S_uv
    K[onI[:, None], onI[None, :]] = S[onI[:, None], onI[None, :]]
    # on x uncertain: Cov(z_u, relu(z_v)) = S_uv Phi(a_v) (Stein's lemma)
    if len(unc) > 0 and len(onI) > 0:
        block = S[onI[:, None], unc[None, :]] * Phi(a[unc])[None, :]
        K[onI[:, None], unc[None, :]] = block
        K[unc[:, None], onI[None, :]] = block.T
    # uncertain x uncertain
    xg, wg = np.polynomial.legendre.leggauss(NODES)
    xg = torch.from_numpy(xg)
    wg = torch.from_numpy(wg)
    q = len(unc)
    mu, su, au = m[unc], s[unc], a[unc]
    Suu = S[unc[:, None], unc[None, :]]
    E2 = torch.zeros(q, q, dtype=torch.float64)
    for i in range(q):
        # t = m_i + s_i x on x in [-a_i, TAIL]: relu(t) = t there
        lo, hi = -au[i], torch.tensor(TAIL, dtype=torch.float64)
        xs = 0.5 * (hi - lo) * xg + 0.5 * (hi + lo)
        ws = 0.5 * (hi - lo) * wg * phi(xs)
        t = mu[i] + su[i] * xs  # nodes
        beta = Suu[i] / (su[i] * su[i])  # regression of z_v on z_i
        cm = mu[None, :] + beta[None, :] * (t[:, None] - mu[i])
        cv = torch.clamp(Suu.diagonal() - beta * Suu[i], min=0)
        cond = relu_mean(cm, torch.sqrt(cv)[None, :].expand_as(cm))
        E2[i] = (ws * t) @ cond
    # the diagonal in closed form
    d2 = (mu * mu + su * su) * Phi(au) + mu * su * phi(au)
    E2[torch.arange(q), torch.arange(q)] = d2
    E2 = 0.5 * (E2 + E2.T)
    K[unc[:, None], unc[None, :]] = E2 - Er[unc][:, None] * Er[unc][None, :]
    variance = torch.einsum("iu,uv,iv->i", B, K, B)
    return mean, variance, len(unc), int(on.sum())


def selftest():
    """relu_moments against 2,000,000 Monte Carlo samples on a small random case (mixed on, off, uncertain units)."""
    gen = torch.Generator().manual_seed(1)
    p, d = 12, 3
    L = torch.randn(p, p, generator=gen, dtype=torch.float64)
    S = L @ L.T / p
    m = torch.randn(p, generator=gen, dtype=torch.float64) * 2
    m[0], m[1] = 30.0, -30.0
    B = torch.randn(d, p, generator=gen, dtype=torch.float64)
    c2 = torch.randn(d, generator=gen, dtype=torch.float64)
    mean, var, q, on = relu_moments(m, S, B, c2)
    z = m + torch.randn(2_000_000, p, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(S).T
    g = torch.clamp(z, min=0) @ B.T + c2
    se_m = g.std(0) / math.sqrt(len(g))
    print('selftest: mean z-scores', ((mean - g.mean(0)) / se_m).tolist(), 'variance rel', ((var - g.var(0)) / g.var(0)).tolist(), 'uncertain', q, 'on', on)


def main():
    # a killed run still removes its memmap of A (gigabytes under TMPDIR)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("input")
    ap.add_argument("sigma", type=float)
    ap.add_argument("out")
    ap.add_argument("--arch", default=None)
    ap.add_argument("--compare", default=None)
    ap.add_argument("--block", type=int, default=64, help="rows of A per backward pass")
    ap.add_argument("--rows-file", default=None, help="take A's rows (float64, p x n) from this file instead of computing them")
    ap.add_argument("--rows", choices=["float32", "float64"], default="float32", help="precision of the backward passes that give A's rows")
    args = ap.parse_args()
    arch = args.arch or ("vgg11" if "vgg" in os.path.basename(args.model) else "alexnet")
    torch.set_num_threads(os.cpu_count() or 2)
    t0 = time.time()
    model = load_model(args.model, arch)
    bottom, top = split_parts(model)
    x = torch.from_numpy(np.load(args.input).astype(np.float64)).reshape(1, 3, 224, 224)
    n = x.numel()
    with torch.no_grad():
        m = bottom(x)[0]
    p = m.numel()

    # A by reverse mode, block by block, into a float64 memmap; S = sigma^2 A A^T accumulated as blocks arrive
    if args.rows_file:
        # A's rows as an earlier run left them (a float64 p x n file), e.g. after an interrupted S
        A = np.memmap(args.rows_file, dtype=np.float64, mode="r", shape=(p, n))
        tmp = None
    else:
        tmp = tempfile.NamedTemporaryFile(prefix="netmoments-ref-A-", suffix=".f64", dir=os.environ.get("TMPDIR", "/tmp"), delete=False)
        tmp.close()
        A = np.memmap(tmp.name, dtype=np.float64, mode="w+", shape=(p, n))
    # the rows' pass: float64 throughout (--rows float64), or float32 autograd (PyTorch's fast
    # convolution kernels; --rows float32, the default) checked against float64 on the first block
    bottom_rows = bottom
    x_rows = x
    if args.rows == "float32":
        model32 = load_model(args.model, arch).float()
        bottom_rows, _ = split_parts(model32)
        x_rows = x.float()
    check = None

    def rows_of(fn, x0, r0, rows):
        xb = x0.expand(rows, -1, -1, -1).clone().requires_grad_(True)
        z = fn(xb)
        U = torch.zeros_like(z)
        U[torch.arange(rows), torch.arange(r0, r0 + rows)] = 1
        (g,) = torch.autograd.grad(z, xb, U)
        return g.reshape(rows, n).double().numpy()

    try:
        for r0 in range(0, p, args.block) if tmp else []:
            rows = min(args.block, p - r0)
            A[r0 : r0 + rows] = rows_of(bottom_rows, x_rows, r0, rows)
            if r0 == 0 and args.rows == "float32":
                exact = rows_of(bottom, x, 0, rows)
                check = float(np.max(np.abs(A[0:rows] - exact)) / np.max(np.abs(exact)))
                print(f"float32 rows against float64 on rows 0..{rows - 1}: max difference {check:.2e} of max |A|", file=sys.stderr, flush=True)
            if r0 == 0 or (r0 // args.block) % 16 == 0:
                print(f"A rows {r0 + rows}/{p}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        t_a = time.time() - t0
        # float64 GEMM by torch's BLAS (numpy's may be the reference BLAS, ~1 GFLOP/s)
        S = torch.zeros(p, p, dtype=torch.float64)
        blk = 512
        for i0 in range(0, p, blk):
            Ai = torch.from_numpy(np.array(A[i0 : i0 + blk]))
            for j0 in range(0, i0 + blk, blk):
                Aj = Ai if j0 == i0 else torch.from_numpy(np.array(A[j0 : j0 + blk]))
                S[i0 : i0 + blk, j0 : j0 + blk] = Ai @ Aj.T
            print(f"S rows {min(p, i0 + blk)}/{p}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        S = torch.tril(S) + torch.tril(S, -1).T
        S = (S * args.sigma**2).numpy()
    finally:
        del A
        if tmp:
            os.unlink(tmp.name)
    t_s = time.time() - t0

    # B by reverse mode at y = relu(m)
    y = torch.clamp(m, min=0).reshape(1, p)
    with torch.no_grad():
        gy = top(y)[0]
    d = gy.numel()
    yb = y.expand(d, -1).clone().requires_grad_(True)
    (B,) = torch.autograd.grad(top(yb), yb, torch.eye(d, dtype=torch.float64))
    c2 = gy - B @ y[0]

    S = torch.from_numpy(S)
    mean, variance, q, n_on = relu_moments(m, S, B, c2)
    seconds = time.time() - t0
    out = {
        "model": args.model,
        "arch": arch,
        "sigma": args.sigma,
        "p": p,
        "n": n,
        "d": d,
        "uncertainUnits": q,
        "unitsOn": n_on,
        "rows": args.rows,
        "rowsCheck": check,
        "seconds": {"A": t_a, "S": t_s - t_a, "total": seconds},
        "mean": mean.tolist(),
        "variance": variance.tolist(),
    }
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(f"reference written to {args.out}: p {p}, n {n}, d {d}, {q} uncertain units, {seconds:.0f} s", file=sys.stderr)
    if args.compare:
        with open(args.compare) as f:
            nm = json.load(f)["results"][0]
        nmean = np.array(nm["mean"])
        nvar = np.array(nm["variance"])
        rmean = mean.numpy()
        rvar = variance.numpy()
        mean_rel = np.max(np.abs(nmean - rmean) / np.maximum(np.abs(rmean), 1e-300))
        var_rel = np.max(np.abs(nvar - rvar) / np.maximum(np.abs(rvar), 1e-300))
        sd_scale = np.max(np.abs(nmean - rmean) / np.sqrt(rvar))
        print(
            f"largest relative difference, netmoments vs reference: mean {mean_rel:.2e}, variance {var_rel:.2e} "
            f"(mean difference in output sds: {sd_scale:.2e}); tolerance 1e-3",
        )
        sys.exit(0 if mean_rel <= 1e-3 and var_rel <= 1e-3 else 1)


if __name__ == "__main__":
    selftest() if sys.argv[1:] == ["--selftest"] else main()
