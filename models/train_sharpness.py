"""Train the demonstration sharpness classifier and export sharpness.onnx.

Label: sharp (1) for clear and freeze frames, blurred (0) for motion_blur
frames with blur_px >= 6; other frames (black, weaker blur) are skipped.
Blurred frames are rare in the synthetic video, so they are oversampled to
half of every batch.

Example (the committed model):
  python3 train_sharpness.py --train /tmp/endo/train --val /tmp/endo/val --epochs 12 --out sharpness.onnx
"""

import argparse
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn

import dataset as ds

SIZE = 224


def cbr(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SharpNet(nn.Module):
    """Tiny CNN: full-resolution first layer (blur lives in the finest detail),
    four stride-2 stages, global average pooling, one linear unit."""

    def __init__(self, w=(8, 16, 24, 32, 32)):
        super().__init__()
        self.features = nn.Sequential(
            cbr(3, w[0], 1),        # 224
            cbr(w[0], w[1], 2),     # 112
            cbr(w[1], w[2], 2),     # 56
            cbr(w[2], w[3], 2),     # 28
            cbr(w[3], w[4], 2),     # 14
        )
        self.fc = nn.Linear(w[4], 1)

    def logits(self, x):
        return self.fc(self.features(x).mean((2, 3)))

    def forward(self, x):
        return torch.sigmoid(self.logits(x))


def batches(frames, labels, batch, steps, rng, clear_idx=None, synth=0.0, blur_native=(24.0, 32.0),
            native=(1280, 720)):
    """Balanced batches: half sharp, half blurred; of the blurred half a share `synth`
    is made by blurring a random clear frame along a random direction by
    `blur_native` pixels of the native frame (anisotropic after the squash to
    SIZE x SIZE). Flips, mild brightness/contrast jitter."""
    pos = np.nonzero(labels == 1)[0]
    neg = np.nonzero(labels == 0)[0]
    n_neg = batch - batch // 2
    n_syn = int(round(n_neg * synth)) if clear_idx is not None and len(clear_idx) else 0
    kx, ky = SIZE / native[0], SIZE / native[1]
    for _ in range(steps):
        b = np.concatenate([rng.choice(pos, batch // 2), rng.choice(neg, n_neg - n_syn)])
        x = ds.to_unit(frames[b])
        y = labels[b].astype(np.float32)
        if n_syn:
            syn = np.empty((n_syn,) + x.shape[1:], np.float32)
            for k, i in enumerate(rng.choice(clear_idx, n_syn)):
                length = rng.uniform(*blur_native)
                th = rng.uniform(0, np.pi)
                syn[k] = ds.line_blur(ds.to_unit(frames[i]), length * np.cos(th) * kx, length * np.sin(th) * ky)
            x = np.concatenate([x, syn])
            y = np.concatenate([y, np.zeros(n_syn, np.float32)])
        if rng.random() < 0.5:
            x = x[:, :, ::-1]
        if rng.random() < 0.5:
            x = x[:, ::-1]
        gain = rng.uniform(0.85, 1.15, (len(x), 1, 1, 1)).astype(np.float32)
        bias = rng.uniform(-0.05, 0.05, (len(x), 1, 1, 1)).astype(np.float32)
        x = np.clip(x * gain + bias, 0, 1)
        yield torch.from_numpy(ds.normalise(x)), torch.from_numpy(y)[:, None]


@torch.no_grad()
def predict(model, frames, batch=64):
    model.eval()
    out = []
    for s in range(0, len(frames), batch):
        out.append(model(torch.from_numpy(ds.normalise(ds.to_unit(frames[s:s + batch])))).numpy()[:, 0])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def labelled(directory):
    recs = [r for r in ds.load_truth(directory) if ds.sharp_label(r) is not None]
    return recs, np.array([ds.sharp_label(r) for r in recs], np.int64), ds.load_frames(directory, SIZE, recs)


def parse_size(s):
    w, h = s.lower().split("x")
    return int(w), int(h)


@torch.no_grad()
def recalibrate_bn(model, batch_iter):
    """Re-estimate BatchNorm running statistics with the final weights (cumulative
    average over the given batches), so eval-mode output matches what was trained."""
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None
    model.train()
    for x, _ in batch_iter:
        model(x)
    model.eval()


def export(model, path):
    model.eval()
    x = torch.zeros(1, 3, SIZE, SIZE)
    kw = dict(input_names=["image"], output_names=["sharp_prob"], opset_version=17, do_constant_folding=True)
    try:
        torch.onnx.export(model, x, path, dynamo=False, **kw)
    except TypeError:
        torch.onnx.export(model, x, path, **kw)


def check_onnx(model, path, frames):
    import onnx
    import onnxruntime as ort
    onnx.checker.check_model(onnx.load(path))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = ds.normalise(ds.to_unit(frames[:8]))
    diffs = []
    for i in range(len(x)):
        y_ort = sess.run(["sharp_prob"], {"image": x[i:i + 1]})[0]
        with torch.no_grad():
            y_t = model(torch.from_numpy(x[i:i + 1])).numpy()
        assert y_ort.shape == (1, 1), y_ort.shape
        diffs.append(np.abs(y_ort - y_t).max())
    print(f"onnx check: shape {y_ort.shape}, max |ort - torch| = {max(diffs):.2e}, file {os.path.getsize(path)} bytes")
    return max(diffs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="training dataset directory")
    ap.add_argument("--val", default=None, help="held-out dataset directory (reported only, never used for training)")
    ap.add_argument("--epochs", type=int, default=12, help="epochs of len(train)/batch balanced steps")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--synthetic", type=float, default=0.5,
                    help="share of the blurred half of each batch made by blurring clear training frames")
    ap.add_argument("--synth-blur", type=float, nargs=2, default=[24.0, 32.0],
                    help="synthetic blur length range in native-frame pixels (blur_px >= 6 at 320 wide = 24 at 1280)")
    ap.add_argument("--native-size", default="1280x720", help="size of the source frames before the squash")
    ap.add_argument("--out", default="sharpness.onnx")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    rng = np.random.default_rng(args.seed)

    t0 = time.time()
    recs, labels, frames = labelled(args.train)
    print(f"train: {len(recs)} frames, {int((labels == 1).sum())} sharp, {int((labels == 0).sum())} blurred "
          f"({time.time() - t0:.0f} s to load)", flush=True)
    val = labelled(args.val) if args.val else None
    clear_idx = np.array([i for i, r in enumerate(recs) if r["episode"] == "clear"])

    model = SharpNet()
    print(f"parameters: {sum(p.numel() for p in model.parameters())}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = max(len(frames) // args.batch, 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps, pct_start=0.1)
    lossf = nn.BCEWithLogitsLoss()
    for epoch in range(args.epochs):
        model.train()
        t0, tot = time.time(), 0.0
        for x, y in batches(frames, labels, args.batch, steps, rng, clear_idx, args.synthetic, args.synth_blur,
                            parse_size(args.native_size)):
            loss = lossf(model.logits(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item()
        msg = f"epoch {epoch + 1}/{args.epochs} loss {tot / steps:.4f} ({time.time() - t0:.0f} s)"
        if val or epoch == args.epochs - 1:
            recalibrate_bn(model, batches(frames, labels, args.batch, 50, np.random.default_rng(args.seed + 1)))
        if val:
            import evaluate
            res = evaluate.eval_sharpness(predict(model, val[2]), val[1])
            msg += f"  val acc {res['accuracy']:.4f} {res['confusion']}"
        print(msg, flush=True)

    export(model, args.out)
    check_onnx(model, args.out, frames)


if __name__ == "__main__":
    main()
