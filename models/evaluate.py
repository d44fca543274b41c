"""Reference evaluation of the two ONNX models with ONNX Runtime.

The detector's post-processing replicates the tower's Rust code
(actors/src/video/detection.rs `postprocess` and `nms`) exactly:
a cell is on if its best class probability >= 0.5; 8-connected components of
on-cells; each gives the box [min_x, min_y, max_x + 1, max_y + 1] * stride
(scaled to the frame), class = argmax of the per-class peaks inside it, score =
that peak; then class-agnostic NMS (a box is kept if its IoU with every kept,
higher-scoring box is <= 0.5).

Scoring: detections are matched greedily, highest score first, to the unmatched
truth box of the same class with the highest IoU, if that IoU >= 0.5 (one to one).
Recall = matched truths / truths, precision = matched detections / detections.
The class-agnostic figures match the same way ignoring the class.

Usage:
  python3 evaluate.py --data DIR [--detector lesion_detector.onnx] [--sharpness sharpness.onnx]
"""

import argparse
import json
import time

import numpy as np

import dataset as ds

SCORE_THRESHOLD = 0.5
NMS_IOU = 0.5
MATCH_IOU = 0.5


def iou(a, b):
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def postprocess(prob_map, frame_w, frame_h, threshold=SCORE_THRESHOLD, nms_iou=NMS_IOU):
    """prob_map [C, H, W] -> list of dicts {class, score, probabilities, box}, like the tower."""
    nc, mh, mw = prob_map.shape
    best = prob_map.max(0)
    on = best >= threshold
    seen = np.zeros_like(on)
    dets = []
    sx, sy = frame_w / mw, frame_h / mh
    for sy0, sx0 in zip(*np.nonzero(on)):  # row-major order, like the Rust scan
        if seen[sy0, sx0]:
            continue
        x0, y0, x1, y1 = mw, mh, 0, 0
        peaks = np.zeros(nc, np.float32)
        stack = [(sy0, sx0)]
        seen[sy0, sx0] = True
        while stack:
            y, x = stack.pop()
            x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
            np.maximum(peaks, prob_map[:, y, x], out=peaks)
            for ny in (y - 1, y, y + 1):
                for nx in (x - 1, x, x + 1):
                    if 0 <= ny < mh and 0 <= nx < mw and not seen[ny, nx] and on[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        cls, score = 0, 0.0
        for k, p in enumerate(peaks):  # first strictly greater wins, like the Rust fold
            if p > score:
                cls, score = k, float(p)
        dets.append({"class": cls, "score": score, "probabilities": peaks.tolist(),
                     "box": (x0 * sx, y0 * sy, (x1 + 1) * sx, (y1 + 1) * sy)})
    dets.sort(key=lambda d: -d["score"])  # stable, like Rust's sort_by
    keep = []
    for d in dets:
        if all(iou(k["box"], d["box"]) <= nms_iou for k in keep):
            keep.append(d)
    return keep


def match(dets, truths, use_class=True, min_iou=MATCH_IOU):
    """Greedy one-to-one matching. truths: list of (class, x0, y0, x1, y1).
    Returns (matched flags of detections, matched flags of truths)."""
    dm = [False] * len(dets)
    tm = [False] * len(truths)
    for i, d in sorted(enumerate(dets), key=lambda t: -t[1]["score"]):
        best, bj = min_iou, -1
        for j, t in enumerate(truths):
            if tm[j] or (use_class and t[0] != d["class"]):
                continue
            v = iou(d["box"], t[1:])
            if v >= best:
                best, bj = v, j
        if bj >= 0:
            dm[i] = tm[bj] = True
    return dm, tm


class DetCounter:
    """Accumulates per-class and overall TP/FP/FN, class-aware and class-agnostic."""

    def __init__(self):
        nc = len(ds.CLASSES)
        self.tp_t = np.zeros(nc, int)   # found truths per truth class
        self.n_t = np.zeros(nc, int)    # truths per class
        self.tp_d = np.zeros(nc, int)   # correct detections per detected class
        self.n_d = np.zeros(nc, int)    # detections per class
        self.ag = np.zeros(4, int)      # agnostic: found truths, truths, correct dets, dets
        self.frames = 0

    def add(self, dets, truths):
        self.frames += 1
        dm, tm = match(dets, truths, True)
        for d, m in zip(dets, dm):
            self.n_d[d["class"]] += 1
            self.tp_d[d["class"]] += m
        for t, m in zip(truths, tm):
            self.n_t[t[0]] += 1
            self.tp_t[t[0]] += m
        dm, tm = match(dets, truths, False)
        self.ag += [sum(tm), len(tm), sum(dm), len(dm)]

    @staticmethod
    def _prf(tp_t, n_t, tp_d, n_d):
        r = tp_t / n_t if n_t else float("nan")
        p = tp_d / n_d if n_d else float("nan")
        f = 2 * p * r / (p + r) if p + r > 0 else float("nan")
        return {"precision": p, "recall": r, "f1": f, "truths": int(n_t), "detections": int(n_d)}

    def summary(self):
        out = {"frames": self.frames}
        for k, c in enumerate(ds.CLASSES):
            out[c] = self._prf(self.tp_t[k], self.n_t[k], self.tp_d[k], self.n_d[k])
        out["overall"] = self._prf(self.tp_t.sum(), self.n_t.sum(), self.tp_d.sum(), self.n_d.sum())
        out["class_agnostic"] = self._prf(*self.ag)
        return out


def format_det(name, s):
    lines = [f"{name}: {s['frames']} frames",
             f"  {'':16s} {'precision':>9s} {'recall':>7s} {'F1':>6s} {'truths':>7s} {'dets':>6s}"]
    for k in ds.CLASSES + ["overall", "class_agnostic"]:
        v = s[k]
        lines.append(f"  {k:16s} {v['precision']:9.3f} {v['recall']:7.3f} {v['f1']:6.3f} {v['truths']:7d} {v['detections']:6d}")
    return "\n".join(lines)


def session(path, threads=1):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def eval_detector(prob_maps, records, size=320):
    """prob_maps: [N, C, H, W] for the non-black `records`. Returns {group: summary}."""
    counters = {"clear_freeze": DetCounter(), "motion_blur": DetCounter()}
    for pm, r in zip(prob_maps, records):
        g = ds.group(r)
        if g not in counters:
            continue
        dets = postprocess(pm, size, size)
        counters[g].add(dets, ds.boxes_in(r, size))
    return {g: c.summary() for g, c in counters.items()}


def eval_sharpness(probs, labels):
    """probs, labels: arrays (labels 1 = sharp). Confusion matrix at 0.5."""
    pred = (np.asarray(probs) >= 0.5).astype(int)
    labels = np.asarray(labels).astype(int)
    cm = {"sharp_as_sharp": int(((labels == 1) & (pred == 1)).sum()),
          "sharp_as_blurred": int(((labels == 1) & (pred == 0)).sum()),
          "blurred_as_sharp": int(((labels == 0) & (pred == 1)).sum()),
          "blurred_as_blurred": int(((labels == 0) & (pred == 0)).sum())}
    return {"frames": int(len(labels)), "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
            "confusion": cm}


def format_sharp(s):
    c = s["confusion"]
    head = "truth \\ predicted"
    return (f"sharpness: {s['frames']} frames, accuracy {s['accuracy']:.4f}\n"
            f"  {head:18s} {'sharp':>7s} {'blurred':>8s}\n"
            f"  {'sharp':18s} {c['sharp_as_sharp']:7d} {c['sharp_as_blurred']:8d}\n"
            f"  {'blurred':18s} {c['blurred_as_sharp']:7d} {c['blurred_as_blurred']:8d}")


def time_session(sess, shape, runs=50):
    x = np.random.default_rng(0).normal(0, 1, shape).astype(np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(5):
        sess.run(None, {name: x})
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        t.append(time.perf_counter() - t0)
    return float(np.median(t) * 1000), float(np.percentile(t, 90) * 1000)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="held-out dataset directory (endotower dataset --out)")
    ap.add_argument("--detector", default=None, help="lesion detector ONNX file")
    ap.add_argument("--sharpness", default=None, help="sharpness classifier ONNX file")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    records = ds.load_truth(args.data)
    results = {}
    if args.detector:
        sess = session(args.detector, args.threads)
        inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
        size = inp.shape[2]
        recs = [r for r in records if r["episode"] != "black"]
        frames = ds.load_frames(args.data, size, recs)
        maps = []
        for i in range(len(recs)):
            x = ds.normalise(ds.to_unit(frames[i]))[None]
            maps.append(sess.run([out.name], {inp.name: x})[0][0])
        res = eval_detector(maps, recs, size)
        med, p90 = time_session(sess, (1, 3, size, size))
        res["latency_ms"] = {"median": med, "p90": p90, "threads": args.threads}
        results["detector"] = res
        for g in ("clear_freeze", "motion_blur"):
            print(format_det(f"detector, {g}", res[g]))
        print(f"detector latency ({args.threads} thread): median {med:.2f} ms, p90 {p90:.2f} ms")
    if args.sharpness:
        sess = session(args.sharpness, args.threads)
        inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
        size = inp.shape[2]
        recs = [r for r in records if ds.sharp_label(r) is not None]
        frames = ds.load_frames(args.data, size, recs)
        probs = []
        for i in range(len(recs)):
            x = ds.normalise(ds.to_unit(frames[i]))[None]
            probs.append(float(sess.run([out.name], {inp.name: x})[0].reshape(-1)[0]))
        res = eval_sharpness(probs, [ds.sharp_label(r) for r in recs])
        med, p90 = time_session(sess, (1, 3, size, size))
        res["latency_ms"] = {"median": med, "p90": p90, "threads": args.threads}
        results["sharpness"] = res
        print(format_sharp(res))
        print(f"sharpness latency ({args.threads} thread): median {med:.2f} ms, p90 {p90:.2f} ms")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
