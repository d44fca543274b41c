"""Loader for the frames written by `endotower dataset` (binary PPM + truth.jsonl).

Shared by train_detector.py, train_sharpness.py and evaluate.py. Pre-processing
replicates the tower's Rust code (actors/src/video/detection.rs `preprocess`):
area-average resize to S x S with integer cell bounds, aspect not kept, then
value = (pixel / 255 - mean[c]) / std[c].
"""

import json
import os

import numpy as np

CLASSES = ["adenoma", "hyperplastic", "ulcer"]
SITES = ["esophagus", "stomach", "colon"]
EPISODES = ["clear", "motion_blur", "freeze", "black"]
MEAN = np.array([0.5, 0.5, 0.5], np.float32)
STD = np.array([0.25, 0.25, 0.25], np.float32)


def read_ppm(path):
    """Binary P6 PPM (maxval 255) -> HxWx3 uint8."""
    with open(path, "rb") as fh:
        data = fh.read()
    fields, pos = [], 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    pos += 1  # the single whitespace after maxval
    if fields[0] != b"P6":
        raise ValueError(f"{path}: not a binary PPM (magic {fields[0]!r})")
    w, h, maxval = int(fields[1]), int(fields[2]), int(fields[3])
    if maxval != 255:
        raise ValueError(f"{path}: maxval {maxval}, expected 255")
    px = np.frombuffer(data, np.uint8, count=w * h * 3, offset=pos)
    return px.reshape(h, w, 3)


def load_truth(directory):
    """The records of DIR/truth.jsonl, in file order."""
    with open(os.path.join(directory, "truth.jsonl")) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _bounds(n_in, n_out):
    lo = np.arange(n_out) * n_in // n_out
    hi = np.minimum(np.maximum((np.arange(n_out) + 1) * n_in // n_out, lo + 1), n_in)
    return lo, hi


def area_resize(img, size):
    """HxWx3 uint8 -> size x size x 3 float32 in [0, 1], exactly like the tower."""
    h, w, _ = img.shape
    if h == size and w == size:
        return img.astype(np.float32) / 255.0
    ylo, yhi = _bounds(h, size)
    xlo, xhi = _bounds(w, size)
    ii = np.zeros((h + 1, w + 1, 3), np.int64)
    ii[1:, 1:] = img.astype(np.int64).cumsum(0).cumsum(1)
    acc = ii[yhi][:, xhi] - ii[ylo][:, xhi] - ii[yhi][:, xlo] + ii[ylo][:, xlo]
    n = ((yhi - ylo)[:, None] * (xhi - xlo)[None, :]).astype(np.float32) * 255.0
    return acc.astype(np.float32) / n[..., None]


def normalise(x01):
    """NxHxWx3 (or HxWx3) float in [0, 1] -> NCHW (or CHW) float32 model input."""
    x = (np.asarray(x01, np.float32) - MEAN) / STD
    return np.moveaxis(x, -1, -3).copy()


def preprocess(img, size):
    """One HxWx3 uint8 frame -> [1, 3, size, size] float32, the contract's input."""
    return normalise(area_resize(img, size))[None]


def load_frames(directory, size, records=None, cache=True):
    """All frames of `records` (default: every record) resized to size x size.

    Returns an NxHxWx3 array: uint8 when the frames already have that size
    (exact), else float16 in [0, 1]. Cached next to the frames as
    `.cache_{size}.npy` (keyed on the record list) to make reruns fast.
    """
    if records is None:
        records = load_truth(directory)
    key = f"{len(records)}_{records[0]['file'] if records else ''}_{records[-1]['file'] if records else ''}"
    path = os.path.join(directory, f".cache_{size}_{key}.npy")
    if cache and os.path.exists(path):
        return np.load(path, mmap_mode=None)
    first = read_ppm(os.path.join(directory, records[0]["file"])) if records else None
    exact = first is not None and first.shape[0] == size and first.shape[1] == size
    out = np.empty((len(records), size, size, 3), np.uint8 if exact else np.float16)
    for i, r in enumerate(records):
        img = read_ppm(os.path.join(directory, r["file"]))
        out[i] = img if exact else area_resize(img, size).astype(np.float16)
    if cache:
        np.save(path, out)
    return out


def to_unit(frames):
    """uint8 or float16 frames -> float32 in [0, 1]."""
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    return frames.astype(np.float32)


def boxes_in(record, size):
    """Truth boxes of one record scaled to a size x size input: list of (class_idx, x0, y0, x1, y1)."""
    sx, sy = size / record["width"], size / record["height"]
    return [(CLASSES.index(b["class"]), b["x0"] * sx, b["y0"] * sy, b["x1"] * sx, b["y1"] * sy) for b in record["boxes"]]


def group(record):
    """Reporting group of a frame: 'clear_freeze', 'motion_blur' or 'black'."""
    ep = record["episode"]
    if ep in ("clear", "freeze"):
        return "clear_freeze"
    return ep


def sharp_label(record, min_blur_px=6.0):
    """1 sharp, 0 blurred, None skipped (black, or motion blur under min_blur_px)."""
    ep = record["episode"]
    if ep in ("clear", "freeze"):
        return 1
    if ep == "motion_blur":
        return 0 if record["blur_px"] >= min_blur_px else None
    return None


def line_blur(img, vx, vy):
    """Box blur of an HxWx3 float image along the segment (vx, vy) pixels (centred),
    averaged over bilinear samples, edges replicated: the synthetic source's motion
    blur (a box kernel along a line) seen after the resize."""
    h, w, _ = img.shape
    n = max(2, int(np.ceil(2 * max(abs(vx), abs(vy)))))
    pad = int(np.ceil(max(abs(vx), abs(vy)) / 2)) + 2
    p = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.zeros_like(img)
    for t in (np.arange(n) + 0.5) / n - 0.5:
        sx, sy = t * vx, t * vy
        ix, iy = int(np.floor(sx)), int(np.floor(sy))
        fx, fy = sx - ix, sy - iy
        y0, x0 = pad + iy, pad + ix
        out += (1 - fx) * (1 - fy) * p[y0:y0 + h, x0:x0 + w]
        out += fx * (1 - fy) * p[y0:y0 + h, x0 + 1:x0 + 1 + w]
        out += (1 - fx) * fy * p[y0 + 1:y0 + 1 + h, x0:x0 + w]
        out += fx * fy * p[y0 + 1:y0 + 1 + h, x0 + 1:x0 + 1 + w]
    return out / n
