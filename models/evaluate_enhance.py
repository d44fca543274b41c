"""Evaluate the enhancement models on a held-out synthetic set, with ONNX Runtime.

- site classifier: accuracy over every non-black frame;
- deblurring: each sharp (clear) frame is blurred along a random direction by
  16-32 source pixels (the synthetic source's motion-blur family); PSNR and
  SSIM (luma, 8-bit scale) of blurred -> sharp against deblurred -> sharp,
  where "deblurred" is what the tower does: filter the luma at 1/2 of the
  source resolution, upsample the correction, add it to R, G and B.

Example (the figures in the model card):
  endotower dataset --out /tmp/enh/val --frames 360 --seed 977 --size 640x360 --stride 29
  python3 evaluate_enhance.py --val /tmp/enh/val
"""

import argparse
import os

import numpy as np
import onnxruntime as ort

import dataset as ds
from train_enhance import SCALE, blur_source_px_range, downscale, luma, site_features


def upsample(y, f, shape):
    """Nearest-neighbour upsampling by f, edge-padded to shape (as the tower)."""
    up = np.repeat(np.repeat(y, f, 0), f, 1)
    out = np.empty(shape, np.float32)
    h, w = min(shape[0], up.shape[0]), min(shape[1], up.shape[1])
    out[:h, :w] = up[:h, :w]
    out[h:, :w] = out[h - 1:h, :w]
    out[:, w:] = out[:, w - 1:w]
    return out


def deblur(session, img01, source_scale):
    f = SCALE // source_scale
    y = downscale(luma(img01), f).astype(np.float32)
    sharp = session.run(None, {"luma": y[None, None]})[0][0, 0]
    corr = upsample(sharp - y, f, img01.shape[:2])
    return np.clip(img01 + corr[..., None], 0.0, 1.0)


def psnr(a, b):
    mse = float(np.mean((a * 255.0 - b * 255.0) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def ssim(a, b):
    """Mean SSIM of two luma images in [0, 1], 8x8 windows with stride 4."""
    a, b = a * 255.0, b * 255.0
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for y in range(0, a.shape[0] - 8, 4):
        for x in range(0, a.shape[1] - 8, 4):
            pa, pb = a[y:y + 8, x:x + 8], b[y:y + 8, x:x + 8]
            ma, mb = pa.mean(), pb.mean()
            va, vb = pa.var(), pb.var()
            cov = ((pa - ma) * (pb - mb)).mean()
            vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--val", required=True)
    ap.add_argument("--site-model", default=os.path.join(here, "site_classifier.onnx"))
    ap.add_argument("--deblur-model", default=os.path.join(here, "deblur.onnx"))
    ap.add_argument("--deblur-frames", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    records = ds.load_truth(args.val)
    source_scale = 1280 // records[0]["width"]

    site = ort.InferenceSession(args.site_model)
    scored = [r for r in records if r["episode"] != "black"]
    hits = 0
    for r in scored:
        x = site_features(ds.read_ppm(os.path.join(args.val, r["file"]))).reshape(1, 3, 32, 32)
        hits += int(np.argmax(site.run(None, {"image": x})[0]) == ds.SITES.index(r["site"]))
    sites = sorted({r["site"] for r in scored})
    print(f"site classifier: accuracy {hits / len(scored):.3f} on {len(scored)} frames (sites {', '.join(sites)})")

    deb = ort.InferenceSession(args.deblur_model)
    clear = [r for r in records if r["episode"] == "clear"]
    pick = rng.choice(len(clear), min(args.deblur_frames, len(clear)), replace=False)
    before, after = [], []
    lo, hi = blur_source_px_range()
    for i in pick:
        img = ds.read_ppm(os.path.join(args.val, clear[i]["file"])).astype(np.float32) / 255.0
        length = rng.uniform(lo, hi) / source_scale
        th = rng.uniform(0, np.pi)
        blurred = ds.line_blur(img, length * np.cos(th), length * np.sin(th))
        out = deblur(deb, blurred, source_scale)
        ys, yb, yo = luma(img), luma(blurred), luma(out)
        before.append((psnr(yb, ys), ssim(yb, ys)))
        after.append((psnr(yo, ys), ssim(yo, ys)))
    b, a = np.array(before), np.array(after)
    print(f"deblur on {len(pick)} held-out frames blurred by {lo:.0f}-{hi:.0f} source px:")
    print(f"  blurred   -> sharp: PSNR {b[:, 0].mean():.2f} dB, SSIM {b[:, 1].mean():.4f}")
    print(f"  deblurred -> sharp: PSNR {a[:, 0].mean():.2f} dB, SSIM {a[:, 1].mean():.4f}")
    print(f"  change: PSNR {a[:, 0].mean() - b[:, 0].mean():+.2f} dB, SSIM {a[:, 1].mean() - b[:, 1].mean():+.4f};"
          f" improved on {(a[:, 0] > b[:, 0]).sum()} of {len(pick)} frames")


if __name__ == "__main__":
    main()
