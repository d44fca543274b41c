"""Train the demonstration models of the enhancement stage (issue 7) and export
site_classifier.onnx and deblur.onnx. numpy only (closed form and plain
gradient descent); no deep-learning framework.

Site classifier: softmax regression on the whole frame area-resized to 32 x 32
(normalised like the other models); output per-site probabilities.

Deblurring filter: one learned K x K convolution (plus bias) applied to the
luma of the frame area-downscaled by SCALE (2: a 1280 x 720 frame is filtered
at 320 x 180). The tower adds the upsampled correction (filtered - input) to
R, G and B of the full frame. Learned by ridge regression on pairs made by
blurring sharp synthetic frames along a random direction by 16-32 source
pixels (the synthetic source's motion-blur episodes), so it is a Wiener-like
inverse of that blur family, averaged over directions.

Examples (the committed models):
  endotower dataset --out /tmp/enh/train --frames 800 --seed 21 --size 640x360 --stride 7
  python3 train_enhance.py --train /tmp/enh/train --out-dir .
"""

import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import dataset as ds

SITE_SIZE = 32
SCALE = 2  # source pixels per filtered pixel
KERNEL = 9
BLUR_SOURCE_PX = (16.0, 32.0)


def blur_source_px_range():
    return BLUR_SOURCE_PX


def luma(img01):
    """HxWx3 float in [0, 1] -> HxW luma (BT.601 weights)."""
    return img01 @ np.array([0.299, 0.587, 0.114], np.float32)


def downscale(y, f):
    """Area-average an HxW image by an integer factor (crops the remainder)."""
    h, w = (y.shape[0] // f) * f, (y.shape[1] // f) * f
    return y[:h, :w].reshape(h // f, f, w // f, f).mean((1, 3))


def blurred_pair(img01, rng, source_scale):
    """(sharp luma, blurred luma) at the filter's resolution, from a frame
    stored at 1/source_scale of the source size."""
    length = rng.uniform(*BLUR_SOURCE_PX) / source_scale
    th = rng.uniform(0, np.pi)
    blurred = ds.line_blur(img01, length * np.cos(th), length * np.sin(th))
    f = SCALE // source_scale
    return downscale(luma(img01), f), downscale(luma(blurred), f)


def patches(y, k, idx):
    """K x K neighbourhoods (edge-replicated) of y at flat indices idx -> N x K*K."""
    r = k // 2
    p = np.pad(y, r, mode="edge")
    h, w = y.shape
    iy, ix = np.divmod(idx, w)
    out = np.empty((len(idx), k * k), np.float32)
    for dy in range(k):
        for dx in range(k):
            out[:, dy * k + dx] = p[iy + dy, ix + dx]
    return out


def train_deblur(frames, rng, source_scale, samples_per_frame=3000, ridge=1e-5):
    xs, ts = [], []
    for img in frames:
        sharp, blur = blurred_pair(img, rng, source_scale)
        idx = rng.choice(sharp.size, samples_per_frame, replace=False)
        xs.append(patches(blur, KERNEL, idx))
        ts.append(sharp.reshape(-1)[idx])
    x = np.concatenate(xs).astype(np.float64)
    t = np.concatenate(ts).astype(np.float64)
    x1 = np.concatenate([x, np.ones((len(x), 1))], 1)
    a = x1.T @ x1 + ridge * len(x) * np.eye(x1.shape[1])
    wb = np.linalg.solve(a, x1.T @ t)
    return wb[:-1].reshape(KERNEL, KERNEL).astype(np.float32), np.float32(wb[-1])


def export_deblur(kernel, bias, path):
    k = kernel.shape[0]
    r = k // 2
    nodes = [
        # Edge padding, as in training: zero padding would darken the rim.
        helper.make_node("Pad", ["luma", "pads"], ["padded"], mode="edge"),
        helper.make_node("Conv", ["padded", "w", "b"], ["luma_sharp"]),
    ]
    graph = helper.make_graph(
        nodes,
        "deblur",
        [helper.make_tensor_value_info("luma", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [helper.make_tensor_value_info("luma_sharp", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [
            numpy_helper.from_array(kernel.reshape(1, 1, k, k), "w"),
            numpy_helper.from_array(np.array([bias], np.float32), "b"),
            numpy_helper.from_array(np.array([0, 0, r, r, 0, 0, r, r], np.int64), "pads"),
        ],
    )
    save(graph, path)


def site_features(img_u8):
    x = (ds.area_resize(img_u8, SITE_SIZE) - ds.MEAN) / ds.STD
    return x.transpose(2, 0, 1).reshape(-1)


def train_site(feats, labels, rng, steps=600, lr=0.5, l2=1e-3):
    n, d = feats.shape
    k = len(ds.SITES)
    w = np.zeros((d, k), np.float32)
    b = np.zeros(k, np.float32)
    onehot = np.eye(k, dtype=np.float32)[labels]
    for _ in range(steps):
        z = feats @ w + b
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / n
        w -= lr * (feats.T @ g / 1.0 + l2 * w)
        b -= lr * g.sum(0)
    return w, b


def export_site(w, b, path):
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["site_prob"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "site_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, SITE_SIZE, SITE_SIZE])],
        [helper.make_tensor_value_info("site_prob", TensorProto.FLOAT, [1, len(ds.SITES)])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    save(graph, path)


def save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="endotower train_enhance.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="directory written by `endotower dataset` (640x360 frames)")
    ap.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--deblur-frames", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    records = ds.load_truth(args.train)
    sharp = [r for r in records if r["episode"] in ("clear", "freeze")]
    source_scale = 1280 // records[0]["width"]

    feats = np.stack([site_features(ds.read_ppm(os.path.join(args.train, r["file"]))) for r in sharp])
    labels = np.array([ds.SITES.index(r["site"]) for r in sharp])
    w, b = train_site(feats, labels, rng)
    acc = float(((feats @ w + b).argmax(1) == labels).mean())
    print(f"site classifier: training accuracy {acc:.3f} on {len(labels)} frames")
    export_site(w, b, os.path.join(args.out_dir, "site_classifier.onnx"))

    pick = rng.choice(len(sharp), min(args.deblur_frames, len(sharp)), replace=False)
    frames = [ds.read_ppm(os.path.join(args.train, sharp[i]["file"])).astype(np.float32) / 255.0 for i in pick]
    kernel, bias = train_deblur(frames, rng, source_scale)
    print(f"deblur filter: {KERNEL}x{KERNEL}, sum {kernel.sum():.3f}, bias {bias:.4f}")
    export_deblur(kernel, bias, os.path.join(args.out_dir, "deblur.onnx"))


if __name__ == "__main__":
    main()
