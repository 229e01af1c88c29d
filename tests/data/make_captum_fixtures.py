#!/usr/bin/env python3
"""Reference attribution maps from Captum for tests/attributions.rs.

Dev-time only. Needs `numpy`, `onnx`, `torch` and `captum`
(e.g. `pip install numpy onnx torch captum`). Run from the crate root:

    python tests/data/make_captum_fixtures.py

For each network, a float64 PyTorch module is built by hand with the exact
weights of the ONNX file (read with the `onnx` package), checked against
onnx's own reference evaluator when available, and explained with Captum on
the first three MNIST test images (pixel / 255):

* Saliency (abs=False), InputXGradient, GuidedBackprop;
* IntegratedGradients with method riemann_left / riemann_right /
  riemann_middle / riemann_trapezoid, n_steps = 50, zero baseline;
* DeepLift (rescale), zero baseline, one image at a time (Captum's max-pool
  rule falls back to the gradient of the *first* sample of a batch where
  |Δx| < eps, so a batch of one keeps each image's own gradient);
* SmoothGrad as the mean of Captum's Saliency over explicit noisy inputs
  x + ε_k, ε_k ~ N(0, σ²), σ = 0.15, N = 8, drawn with numpy and saved, so the
  Rust side uses the same draws; SmoothGrad on IG likewise, as the mean of
  Captum's IntegratedGradients (riemann_middle, 50 steps, zero baseline) over
  the same noisy inputs.

Every target is the logit of the class the network predicts for the image.
Everything is written to tests/data/captum/ as float64 .npy plus manifest.json.
"""

import json
import os
import platform
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper

import captum
from captum.attr import (
    DeepLift,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    Saliency,
)

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(os.path.dirname(HERE))
SHARED = os.path.join(CRATE, "..", "shared", "data")
OUT = os.path.join(HERE, "captum")

N_IMAGES = 3
N_STEPS = 50
SIGMA = 0.15
N_NOISE = 8
SEED = 20240611
IG_METHODS = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]

torch.set_default_dtype(torch.float64)

# name, ONNX path relative to the crate root (shared data under ../shared/data).
NETWORKS = [
    ("mnist_mlp", "models/mnist_mlp.onnx"),
    ("mnist_cnn", "models/mnist_cnn.onnx"),
    ("mnist_256x2", "../shared/data/vnncomp2021_mnist_fc/onnx/mnist-net_256x2.onnx"),
]


def weights(model):
    return {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def build(path):
    """nn.Sequential with the ONNX graph's layers and weights, in float64."""
    model = onnx.load(path)
    w = weights(model)
    layers = []
    for node in model.graph.node:
        a = attrs(node)
        if node.op_type == "Flatten":
            assert a.get("axis", 1) == 1
            layers.append(nn.Flatten())
        elif node.op_type == "Gemm":
            assert a.get("transB", 0) == 1 and a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0
            wt, b = w[node.input[1]], w[node.input[2]]
            lin = nn.Linear(wt.shape[1], wt.shape[0])
            lin.weight.data = torch.from_numpy(wt.copy())
            lin.bias.data = torch.from_numpy(b.copy())
            layers.append(lin)
        elif node.op_type == "Relu":
            layers.append(nn.ReLU())  # one module per use, as DeepLift requires
        elif node.op_type == "Conv":
            wt, b = w[node.input[1]], w[node.input[2]]
            assert a.get("group", 1) == 1 and list(a.get("dilations", [1, 1])) == [1, 1]
            pads = a.get("pads", [0, 0, 0, 0])
            assert pads[0] == pads[2] and pads[1] == pads[3]
            conv = nn.Conv2d(
                wt.shape[1], wt.shape[0], tuple(wt.shape[2:]),
                stride=tuple(a.get("strides", [1, 1])), padding=(pads[0], pads[1]),
            )
            conv.weight.data = torch.from_numpy(wt.copy())
            conv.bias.data = torch.from_numpy(b.copy())
            layers.append(conv)
        elif node.op_type == "MaxPool":
            assert list(a.get("pads", [0, 0, 0, 0])) == [0, 0, 0, 0]
            layers.append(nn.MaxPool2d(tuple(a["kernel_shape"]), stride=tuple(a.get("strides", a["kernel_shape"]))))
        else:
            raise SystemExit(f"{path}: op {node.op_type} is not handled by this script")
    inp = model.graph.input[0]
    shape = [d.dim_value if d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim]
    return nn.Sequential(*layers).double().eval(), model, shape


def check_against_onnx(model, net, x):
    try:
        from onnx.reference import ReferenceEvaluator
    except ImportError:
        return None
    ev = ReferenceEvaluator(model)
    name = model.graph.input[0].name
    got = ev.run(None, {name: x.numpy().astype(np.float32)})[0]
    want = net(x).detach().numpy()
    return float(np.abs(got - want).max())


def mean_over_noise(fn, x, noise):
    """Mean of fn(x + ε_k) over the draws; x is [B, ...], noise [N, B, len]."""
    acc = None
    for k in range(noise.shape[0]):
        xk = x + torch.from_numpy(noise[k]).reshape(x.shape)
        a = fn(xk).detach()
        acc = a if acc is None else acc + a
    return acc / noise.shape[0]


def main():
    os.makedirs(OUT, exist_ok=True)
    imgs = np.load(os.path.join(SHARED, "mnist_samples", "mnist_test_100_images_u8.npy"))
    x_flat = imgs[:N_IMAGES].reshape(N_IMAGES, -1).astype(np.float64) / 255.0
    np.save(os.path.join(OUT, "inputs.npy"), x_flat)
    rng = np.random.default_rng(SEED)
    noise = rng.normal(0.0, SIGMA, size=(N_NOISE, N_IMAGES, x_flat.shape[1]))
    np.save(os.path.join(OUT, "noise.npy"), noise)

    manifest = {
        "inputs": "inputs.npy",
        "noise": "noise.npy",
        "images": "first 3 MNIST test images (mnist_test_100_images_u8.npy) / 255",
        "n_steps": N_STEPS,
        "sigma": SIGMA,
        "n_noise": N_NOISE,
        "seed": SEED,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "onnx": onnx.__version__,
            "torch": torch.__version__,
            "captum": captum.__version__,
        },
        "networks": [],
    }
    for name, rel in NETWORKS:
        net, model, shape = build(os.path.join(CRATE, rel))
        x = torch.from_numpy(x_flat.copy()).reshape([N_IMAGES] + shape[1:])
        diff = check_against_onnx(model, net, x)
        logits = net(x).detach()
        targets = logits.argmax(dim=1).tolist()
        maps = {}
        x.requires_grad_(False)

        def keep(key, t):
            maps[key] = t.detach().reshape(N_IMAGES, -1).numpy().astype(np.float64)

        keep("saliency", Saliency(net).attribute(x.clone().requires_grad_(), target=targets, abs=False))
        keep("input_x_gradient", InputXGradient(net).attribute(x.clone().requires_grad_(), target=targets))
        keep("guided_backprop", GuidedBackprop(net).attribute(x.clone().requires_grad_(), target=targets))
        ig = IntegratedGradients(net)
        deltas = {}
        for m in IG_METHODS:
            a, d = ig.attribute(
                x.clone().requires_grad_(), baselines=torch.zeros_like(x), target=targets,
                n_steps=N_STEPS, method=m, return_convergence_delta=True,
            )
            keep("ig_" + m, a)
            deltas["ig_" + m] = d.abs().max().item()
        dl = []
        dl_delta = 0.0
        for b in range(N_IMAGES):
            a, d = DeepLift(net).attribute(
                x[b : b + 1].clone().requires_grad_(), baselines=torch.zeros_like(x[b : b + 1]),
                target=targets[b], return_convergence_delta=True,
            )
            dl.append(a.detach().reshape(1, -1))
            dl_delta = max(dl_delta, d.abs().max().item())
        keep("deeplift", torch.cat(dl))
        deltas["deeplift"] = dl_delta
        sal = Saliency(net)
        keep(
            "smoothgrad",
            mean_over_noise(lambda xk: sal.attribute(xk.requires_grad_(), target=targets, abs=False), x, noise),
        )
        keep(
            "smoothgrad_ig",
            mean_over_noise(
                lambda xk: ig.attribute(
                    xk.requires_grad_(), baselines=torch.zeros_like(xk), target=targets,
                    n_steps=N_STEPS, method="riemann_middle",
                ),
                x, noise,
            ),
        )
        files = {}
        for key, arr in maps.items():
            fname = f"{name}_{key}.npy"
            np.save(os.path.join(OUT, fname), arr)
            files[key] = fname
        manifest["networks"].append(
            {
                "name": name,
                "onnx": rel,
                "input_shape": shape,
                "targets": targets,
                "logits": logits.numpy().tolist(),
                "torch_vs_onnx_reference_max_abs": diff,
                "captum_convergence_delta_max_abs": deltas,
                "maps": files,
            }
        )
        print(name, "targets", targets, "torch vs onnx", diff, "deltas", deltas, file=sys.stderr)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
