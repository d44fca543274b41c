"""Train the demonstration lesion detector and export lesion_detector.onnx.

Segmentation-style training: the target is, per class, the 80x80 (stride 4)
mask of the cells whose centre lies inside a truth box of that class, so the
tower's post-processing (connected components -> box of the component) gives
back the truth box to within half a cell. Loss: BCE + soft dice.

Example (the committed model):
  python3 train_detector.py --train /tmp/endo/train --val /tmp/endo/val --epochs 20 --out lesion_detector.onnx
"""

import argparse
import itertools
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import dataset as ds

SIZE = 320
STRIDE = 4
MAP = SIZE // STRIDE


def cbr(cin, cout, stride=1, dil=1, k=3):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, padding=dil * (k // 2), dilation=dil, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class LesionNet(nn.Module):
    """Tiny two-scale FCN: stride-4 detail path + stride-8 dilated context path."""

    def __init__(self, nc=len(ds.CLASSES), w=(16, 24, 32), head=24):
        super().__init__()
        self.stem = nn.Sequential(cbr(3, w[0], 2), cbr(w[0], w[1], 2), cbr(w[1], w[1]))     # stride 4
        self.down = cbr(w[1], w[2], 2)                                                     # stride 8
        self.context = nn.Sequential(cbr(w[2], w[2], dil=1), cbr(w[2], w[2], dil=2),
                                     cbr(w[2], w[2], dil=4), cbr(w[2], w[2], dil=8))
        self.fuse = nn.Sequential(cbr(w[1] + w[2], head, k=1), cbr(head, head))
        self.out = nn.Conv2d(head, nc, 1)

    def logits(self, x):
        s4 = self.stem(x)
        c = self.context(self.down(s4))
        c = F.interpolate(c, scale_factor=2, mode="nearest")
        return self.out(self.fuse(torch.cat([s4, c], 1)))

    def forward(self, x):
        return torch.sigmoid(self.logits(x))


def cell_range(lo, hi):
    """Candidate inclusive cell ranges [a, b] near the pixel span [lo, hi)."""
    a0 = int(np.floor(lo / STRIDE))
    b0 = int(np.ceil(hi / STRIDE)) - 1
    out = []
    for a in (a0, a0 + 1):
        for b in (b0, b0 - 1):
            a_, b_ = max(a, 0), min(b, MAP - 1)
            if a_ <= b_:
                out.append((a_, b_))
    if not out:
        c = min(max(int((lo + hi) / 2 / STRIDE), 0), MAP - 1)
        out.append((c, c))
    return out


def target_cells(x0, y0, x1, y1):
    """The cell rectangle whose box (as the tower computes it) has the highest IoU with the truth box."""
    best, arg = -1.0, None
    for ax, bx in cell_range(x0, x1):
        for ay, by in cell_range(y0, y1):
            cand = (ax * STRIDE, ay * STRIDE, (bx + 1) * STRIDE, (by + 1) * STRIDE)
            iw = max(min(cand[2], x1) - max(cand[0], x0), 0.0)
            ih = max(min(cand[3], y1) - max(cand[1], y0), 0.0)
            inter = iw * ih
            v = inter / ((cand[2] - cand[0]) * (cand[3] - cand[1]) + (x1 - x0) * (y1 - y0) - inter)
            if v > best:
                best, arg = v, (ax, ay, bx, by)
    return arg, best


def rect_iou(rect, box):
    """IoU of a cell rectangle (ax, ay, bx, by), as the tower turns it into a box, with a pixel box."""
    ax, ay, bx, by = rect
    if ax > bx or ay > by:
        return 0.0
    c = (ax * STRIDE, ay * STRIDE, (bx + 1) * STRIDE, (by + 1) * STRIDE)
    iw = max(min(c[2], box[2]) - max(c[0], box[0]), 0.0)
    ih = max(min(c[3], box[3]) - max(c[1], box[1]), 0.0)
    inter = iw * ih
    return inter / ((c[2] - c[0]) * (c[3] - c[1]) + (box[2] - box[0]) * (box[3] - box[1]) - inter)


def separate(ra, rb, box_a, box_b):
    """Shrink two cell rectangles so that at least one empty cell lies between them
    (else the tower's 8-connected components would merge them into one box).
    Picks the cut (axis, split) that keeps the lower of the two IoUs highest.
    Returns the new pair, or None when they cannot be separated sensibly."""
    best, arg = -1.0, None
    for axis in (0, 1):
        lo, hi = axis, axis + 2  # indices of (min, max) along this axis
        for first, second, bf, bs, swap in ((ra, rb, box_a, box_b, False), (rb, ra, box_b, box_a, True)):
            # `first` ends before `second` starts along the axis: need first.max + 1 < second.min.
            if (first[lo] + first[hi]) > (second[lo] + second[hi]):
                continue
            need = first[hi] + 2 - second[lo]
            if need <= 0:
                return ra, rb
            for k in range(need + 1):
                f, g = list(first), list(second)
                f[hi] -= k
                g[lo] += need - k
                if f[lo] > f[hi] or g[lo] > g[hi]:
                    continue
                v = min(rect_iou(f, bf), rect_iou(g, bs))
                if v > best:
                    best, arg = v, ((g, f) if swap else (f, g))
    if arg is None or best < 0.3:
        return None
    return tuple(arg[0]), tuple(arg[1])


def masks_for(records, gap_weight=10.0):
    """Per-class cell masks [N, C, MAP, MAP] (uint8) and a per-cell loss weight
    [N, MAP, MAP] (float16). For each truth box the target is the cell rectangle
    that reproduces it best through the tower's post-processing; rectangles of
    neighbouring lesions are cut back so an empty cell separates them, and the
    cut cells get `gap_weight` in the loss."""
    out = np.zeros((len(records), len(ds.CLASSES), MAP, MAP), np.uint8)
    weight = np.ones((len(records), MAP, MAP), np.float16)
    for i, r in enumerate(records):
        boxes = ds.boxes_in(r, SIZE)
        rects = [target_cells(*b[1:])[0] for b in boxes]
        orig = list(rects)
        for a in range(len(rects)):
            for b in range(a + 1, len(rects)):
                sep = separate(rects[a], rects[b], boxes[a][1:], boxes[b][1:])
                if sep is not None:
                    rects[a], rects[b] = sep
        # Gap cells: the cells cut away, and every empty cell next to two lesions.
        near = np.zeros((MAP, MAP), np.int32)
        for (ax, ay, bx, by), (oax, oay, obx, oby) in zip(rects, orig):
            weight[i, oay:oby + 1, oax:obx + 1] = gap_weight
            near[max(ay - 1, 0):by + 2, max(ax - 1, 0):bx + 2] += 1
        weight[i][near >= 2] = gap_weight
        for (c, *_), (ax, ay, bx, by) in zip(boxes, rects):
            if ax <= bx and ay <= by:
                weight[i, ay:by + 1, ax:bx + 1] = 1.0
                out[i, c, ay:by + 1, ax:bx + 1] = 1
    return out, weight


def batches(frames, masks, weights, batch, crop, rng, centres=None, p_lesion=0.7):
    """Random order; random square crop (multiple of STRIDE) that, with probability
    p_lesion, contains the centre of one of the frame's lesions (`centres`: per frame
    a list of (x, y) in input pixels); flips; mild brightness/contrast jitter."""
    idx = rng.permutation(len(frames))
    crop = crop if crop and crop < SIZE else SIZE
    cc = crop // STRIDE
    for s in range(0, len(idx) - batch + 1, batch):
        b = idx[s:s + batch]
        x = np.empty((len(b), crop, crop, 3), np.float32)
        m = np.empty((len(b), masks.shape[1], cc, cc), np.float32)
        wt = np.empty((len(b), 1, cc, cc), np.float32)
        for k, i in enumerate(b):
            hi = (SIZE - crop) // STRIDE  # last cell origin
            if centres is not None and centres[i] and rng.random() < p_lesion:
                px, py = centres[i][rng.integers(len(centres[i]))]
                cx = int(np.clip(rng.integers(int(px // STRIDE) - cc + 1, int(px // STRIDE) + 1), 0, hi))
                cy = int(np.clip(rng.integers(int(py // STRIDE) - cc + 1, int(py // STRIDE) + 1), 0, hi))
            else:
                cx, cy = int(rng.integers(0, hi + 1)), int(rng.integers(0, hi + 1))
            x[k] = ds.to_unit(frames[i, cy * STRIDE:cy * STRIDE + crop, cx * STRIDE:cx * STRIDE + crop])
            m[k] = masks[i, :, cy:cy + cc, cx:cx + cc]
            wt[k, 0] = weights[i, cy:cy + cc, cx:cx + cc]
        if rng.random() < 0.5:
            x, m, wt = x[:, :, ::-1], m[:, :, :, ::-1], wt[:, :, :, ::-1]
        if rng.random() < 0.5:
            x, m, wt = x[:, ::-1], m[:, :, ::-1], wt[:, :, ::-1]
        gain = rng.uniform(0.85, 1.15, (len(b), 1, 1, 1)).astype(np.float32)
        bias = rng.uniform(-0.05, 0.05, (len(b), 1, 1, 1)).astype(np.float32)
        x = np.clip(x * gain + bias, 0, 1)
        yield torch.from_numpy(ds.normalise(x)), (torch.from_numpy(np.ascontiguousarray(m)), torch.from_numpy(np.ascontiguousarray(wt)))


def loss_fn(logits, target_weight):
    target, weight = target_weight
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).mean()
    p = torch.sigmoid(logits)
    inter = (p * target).sum((0, 2, 3))
    denom = p.sum((0, 2, 3)) + target.sum((0, 2, 3))
    dice = 1 - ((2 * inter + 1) / (denom + 1)).mean()
    return bce + dice


@torch.no_grad()
def predict(model, frames, batch=32):
    model.eval()
    out = []
    for s in range(0, len(frames), batch):
        x = torch.from_numpy(ds.normalise(ds.to_unit(frames[s:s + batch])))
        out.append(model(x).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(ds.CLASSES), MAP, MAP), np.float32)


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
    kw = dict(input_names=["image"], output_names=["prob_map"], opset_version=17, do_constant_folding=True)
    try:
        torch.onnx.export(model, x, path, dynamo=False, **kw)
    except TypeError:
        torch.onnx.export(model, x, path, **kw)


def check_onnx(model, path, frames):
    import onnx
    import onnxruntime as ort
    onnx.checker.check_model(onnx.load(path))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = ds.normalise(ds.to_unit(frames[:4]))
    diffs = []
    for i in range(len(x)):
        y_ort = sess.run(["prob_map"], {"image": x[i:i + 1]})[0]
        with torch.no_grad():
            y_t = model(torch.from_numpy(x[i:i + 1])).numpy()
        assert y_ort.shape == (1, len(ds.CLASSES), MAP, MAP), y_ort.shape
        diffs.append(np.abs(y_ort - y_t).max())
    print(f"onnx check: shape {y_ort.shape}, max |ort - torch| = {max(diffs):.2e}, file {os.path.getsize(path)} bytes")
    return max(diffs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="training dataset directory")
    ap.add_argument("--val", default=None, help="held-out dataset directory (reported only, never used for training)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=128, help="square training crop (multiple of 4; 0 = full frame)")
    ap.add_argument("--gap-weight", type=float, default=10.0, help="loss weight of the empty cells that must separate neighbouring lesions")
    ap.add_argument("--p-lesion", type=float, default=0.7, help="share of crops placed on a lesion")
    ap.add_argument("--full-epochs", type=int, default=1, help="last N epochs on full frames")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="lesion_detector.onnx")
    ap.add_argument("--save-pt", default=None, help="also save the torch state_dict here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    rng = np.random.default_rng(args.seed)

    recs = [r for r in ds.load_truth(args.train) if r["episode"] != "black"]
    t0 = time.time()
    frames = ds.load_frames(args.train, SIZE, recs)
    masks, weights = masks_for(recs, args.gap_weight)
    centres = [[((b[1] + b[3]) / 2, (b[2] + b[4]) / 2) for b in ds.boxes_in(r, SIZE)] for r in recs]
    print(f"train: {len(recs)} frames ({time.time() - t0:.0f} s to load), "
          f"positive cells {masks.mean():.4f}", flush=True)
    val = None
    if args.val:
        vrecs = [r for r in ds.load_truth(args.val) if r["episode"] != "black"]
        val = (vrecs, ds.load_frames(args.val, SIZE, vrecs))

    model = LesionNet()
    print(f"parameters: {sum(p.numel() for p in model.parameters())}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = len(frames) // args.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
                                                pct_start=0.1)
    for epoch in range(args.epochs):
        model.train()
        crop = 0 if epoch >= args.epochs - args.full_epochs else args.crop
        t0, tot, n = time.time(), 0.0, 0
        for x, m in batches(frames, masks, weights, args.batch, crop, rng, centres, args.p_lesion):
            loss = loss_fn(model.logits(x), m)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot, n = tot + loss.item(), n + 1
        msg = f"epoch {epoch + 1}/{args.epochs} crop {crop or SIZE} loss {tot / max(n, 1):.4f} ({time.time() - t0:.0f} s)"
        last = epoch == args.epochs - 1
        if last or (val and epoch % 5 == 4):
            recal_rng = np.random.default_rng(args.seed + 1)
            recalibrate_bn(model, itertools.islice(batches(frames, masks, weights, args.batch, 0, recal_rng), 50))
        if val and (epoch % 5 == 4 or last):
            import evaluate
            res = evaluate.eval_detector(predict(model, val[1]), val[0])
            for g in ("clear_freeze", "motion_blur"):
                o, a = res[g]["overall"], res[g]["class_agnostic"]
                msg += f"\n  val {g}: P {o['precision']:.3f} R {o['recall']:.3f} (agnostic P {a['precision']:.3f} R {a['recall']:.3f})"
        print(msg, flush=True)

    if args.save_pt:
        torch.save(model.state_dict(), args.save_pt)
    export(model, args.out)
    check_onnx(model, args.out, frames)


if __name__ == "__main__":
    main()
