#!/usr/bin/env python3
"""Throughput of Captum's IntegratedGradients and a plain PyTorch PGD loop on
the weights and inputs of `cargo bench --bench bench_main -- throughput`,
printed side by side with nnexplain's figures from the same run.

Development-time only (needs `pip install torch captum onnx numpy`); the
engine never imports it. Both libraries run on 2 threads, like the benches.

    python3 benches/captum_pgd_reference.py [--skip-cargo] [--json OUT]

Settings match the Rust bench: IG with 200 steps (Captum's riemann_middle,
zero baseline, the predicted logit, all 100 images in one call with
`internal_batch_size` rows per pass); PGD untargeted l-inf, 100 steps of
2.5 eps / 100, one random start, cross-entropy, projected on the ball and
the box, all 100 images as one batch.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import torch
from captum.attr import IntegratedGradients

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
MEAN = np.array([0.485, 0.456, 0.406])
STD = 0.225


class OnnxNet(torch.nn.Module):
    """The ops of the two benchmark networks (Flatten, Gemm, Relu, Conv) read
    straight from the ONNX graph, in graph order."""

    def __init__(self, path):
        super().__init__()
        m = onnx.load(str(path))
        init = {t.name: torch.tensor(onnx.numpy_helper.to_array(t).copy()) for t in m.graph.initializer}
        layers = []
        for n in m.graph.node:
            at = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            if n.op_type == "Flatten":
                layers.append(torch.nn.Flatten())
            elif n.op_type == "Relu":
                layers.append(torch.nn.ReLU())
            elif n.op_type == "Gemm":
                w = init[n.input[1]]
                if not at.get("transB", 0):
                    w = w.t()
                lin = torch.nn.Linear(w.shape[1], w.shape[0])
                lin.weight.data = w.contiguous().float()
                lin.bias.data = init[n.input[2]].float()
                layers.append(lin)
            elif n.op_type == "Conv":
                w = init[n.input[1]]
                conv = torch.nn.Conv2d(
                    w.shape[1], w.shape[0], tuple(w.shape[2:]),
                    stride=tuple(at.get("strides", [1, 1])),
                    padding=tuple(at.get("pads", [0, 0, 0, 0])[:2]),
                )
                conv.weight.data = w.float()
                conv.bias.data = init[n.input[2]].float()
                layers.append(conv)
            else:
                raise SystemExit(f"{path}: op {n.op_type} is not handled by this script")
        self.seq = torch.nn.Sequential(*layers)

    def forward(self, x):
        return self.seq(x)


def inputs():
    mn = np.load(DATA / "mnist_samples/mnist_test_100_images_u8.npy").reshape(100, 784) / 255.0
    cf = np.load(DATA / "cifar10_samples/cifar10_test_100_images_hwc_u8.npy") / 255.0
    cf = ((cf - MEAN) / STD).transpose(0, 3, 1, 2)
    lo = np.broadcast_to(((0 - MEAN) / STD)[:, None, None], (3, 32, 32))
    hi = np.broadcast_to(((1 - MEAN) / STD)[:, None, None], (3, 32, 32))
    return [
        ("mnist-net_256x4", DATA / "vnncomp2021_mnist_fc/onnx/mnist-net_256x4.onnx",
         torch.tensor(mn, dtype=torch.float32).reshape(100, 784, 1), 0.0, 1.0, 0.03),
        ("cifar_base_kw", DATA / "vnncomp2021_oval21_cifar/onnx/cifar_base_kw.onnx",
         torch.tensor(cf, dtype=torch.float32), torch.tensor(lo.copy(), dtype=torch.float32),
         torch.tensor(hi.copy(), dtype=torch.float32), 2.0 / 255.0 / STD),
    ]


def pgd(model, x, labels, lo, hi, eps, steps=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    eta = 2.5 * eps / steps
    delta = (torch.rand(x.shape, generator=g) * 2 - 1) * eps
    xa = torch.clamp(x + delta, lo, hi) if isinstance(lo, float) else torch.max(torch.min(x + delta, hi), lo)
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xa), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xa)
        with torch.no_grad():
            xa = xa + eta * grad.sign()
            xa = torch.max(torch.min(xa, x + eps), x - eps)
            xa = torch.clamp(xa, lo, hi) if isinstance(lo, float) else torch.max(torch.min(xa, hi), lo)
    return xa.detach()


def timed(f, repeat):
    f()  # warm-up
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def rust_rate(group, name):
    est = ROOT / "target/criterion/throughput" / group / name / "new/estimates.json"
    if not est.is_file():
        return None
    ns = json.loads(est.read_text())["median"]["point_estimate"]
    return 100 / (ns * 1e-9)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-cargo", action="store_true", help="read the last bench run instead of running it")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = []
    for name, path, x, lo, hi, eps in inputs():
        model = OnnxNet(path).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            labels = model(x).argmax(1)
        ig = IntegratedGradients(model)
        best = None
        for ibs in (200, 1000, 4000):
            t = timed(lambda: ig.attribute(x, baselines=0.0, target=labels, n_steps=200,
                                           method="riemann_middle", internal_batch_size=ibs),
                      args.repeat)
            if best is None or t < best[0]:
                best = (t, ibs)
            print(f"captum IG {name} internal_batch_size={ibs}: {100 / t:.1f} images/s", file=sys.stderr)
        # One call per image, as in a per-sample explanation loop.
        t_one = timed(lambda: [ig.attribute(x[i:i + 1], baselines=0.0, target=labels[i:i + 1], n_steps=200,
                                            method="riemann_middle", internal_batch_size=200)
                               for i in range(len(x))], 1)
        print(f"captum IG {name} one image per call: {100 / t_one:.1f} images/s", file=sys.stderr)
        t_pgd = timed(lambda: pgd(model, x, labels, lo, hi, eps), args.repeat)
        rows.append({"net": name, "captum_ig200": 100 / best[0], "captum_internal_batch_size": best[1],
                     "captum_ig200_one_per_call": 100 / t_one,
                     "torch_pgd_linf100": 100 / t_pgd})
    if not args.skip_cargo:
        subprocess.run(["cargo", "bench", "--bench", "bench_main", "--", "throughput/"],
                       cwd=ROOT, check=True, env={**os.environ, "RAYON_NUM_THREADS": "2"})
    print(f"{'network':18} {'method':14} {'reference img/s':>16} {'nnexplain img/s':>16} {'ratio':>7}")
    for r in rows:
        for ours, ref, label in (("ig200_f32", "captum_ig200", "IG 200 (f32)"),
                                 ("ig200_f64", "captum_ig200", "IG 200 (f64)"),
                                 ("pgd_linf100", "torch_pgd_linf100", "PGD linf 100"),
                                 ("pgd_linf100_f32", "torch_pgd_linf100", "PGD (f32)")):
            rate = rust_rate(ours, r["net"])
            r[ours] = rate
            ratio = f"{rate / r[ref]:.1f}x" if rate else "-"
            print(f"{r['net']:18} {label:14} {r[ref]:16.1f} {rate or float('nan'):16.1f} {ratio:>7}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
