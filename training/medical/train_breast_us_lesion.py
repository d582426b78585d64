#!/usr/bin/env python3
"""Train the `breast-us-lesion` reference model (medical domain) on BUSI.

Usage (from the repository root):
    /usr/bin/python3 training/medical/train_breast_us_lesion.py [../shared/datasets/busi] \
        [--epochs 36] [--threads 1] [--max-minutes 50] [--resume] [--export-only]

Steps: letterbox every image to 256x256 (scale longest side to 256, pad bottom/right with 0),
fixed seeded 80/20 split by image stratified by class, train a small U-Net with a malignancy head
(flip / affine / intensity augmentation), checkpoint every epoch, export ONNX (opset 17, dynamic
batch), check onnxruntime-node parity against PyTorch on the validation images, choose the
threshold and minimum lesion area on the validation split from the ONNX outputs, measure CPU
latency with one intra-op thread, and write model.onnx, model.json and MODEL_CARD.md into
models/medical/breast-us-lesion/1/.
"""
import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # training/, for the shared harness in training/common
from common import export_onnx as common_export_onnx  # noqa: E402
from common import md_table, ort_parity, seed_everything, write_manifest, write_model_card  # noqa: E402
from net import ExportWrapper, TinyUNet  # noqa: E402

SEED = 20260
SIZE = 256
PAD_VALUE = 0.0
OUT_DIR = os.path.join(REPO, "models", "medical", "breast-us-lesion", "1")
CKPT_DIR = os.path.join(HERE, "checkpoints")  # not committed (see .gitignore note in README)
NAME, VERSION = "breast-us-lesion", "1"
MALIGNANCY_MIN_AUC = 0.80  # the head is kept only if benign-vs-malignant AUC on validation reaches this


# ----------------------------------------------------------------------------- data

def letterbox(img: Image.Image, size=SIZE, resample=Image.BILINEAR, pad=0):
    """Scale the longest side to `size` keeping aspect, pad bottom/right. Returns (array, (h, w))."""
    w, h = img.size
    s = size / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    r = img.resize((nw, nh), resample)
    canvas = Image.new(img.mode, (size, size), pad)
    canvas.paste(r, (0, 0))
    return np.asarray(canvas), (nh, nw)


def load_busi(root):
    rows = list(csv.DictReader(open(os.path.join(root, "labels.csv"))))
    imgs, masks, classes, ids = [], [], [], []
    for r in rows:
        im = Image.open(os.path.join(root, "images", r["id"] + ".png")).convert("L")
        mk = Image.open(os.path.join(root, "masks", r["id"] + ".png")).convert("L")
        a, _ = letterbox(im, pad=int(round(PAD_VALUE * 255)))
        m, _ = letterbox(mk, resample=Image.BILINEAR, pad=0)
        imgs.append(a.astype(np.uint8))
        masks.append((m >= 128).astype(np.uint8))
        classes.append(r["class"])
        ids.append(r["id"])
    return np.stack(imgs), np.stack(masks), np.array(classes), np.array(ids)


def make_split(ids, classes, seed=SEED):
    idx = np.arange(len(ids))
    tr, va = train_test_split(idx, test_size=0.2, random_state=seed, stratify=classes)
    return np.sort(tr), np.sort(va)


# ----------------------------------------------------------------------------- augmentation

def augment(x01, m, gen):
    """x01: [B,1,H,W] in [0,1]; m: [B,1,H,W] {0,1}. Horizontal flip, small affine, intensity."""
    b = x01.shape[0]
    u = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    flip = (u(b) < 0.5).float() * 2 - 1  # -1 flips horizontally
    ang = (u(b) * 2 - 1) * math.radians(12)
    sc = torch.exp((u(b) * 2 - 1) * math.log(1.15))
    tx, ty = (u(b) * 2 - 1) * 0.08, (u(b) * 2 - 1) * 0.08
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = cos * flip
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * flip
    theta[:, 1, 1] = cos
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, x01.shape, align_corners=False)
    x = F.grid_sample(x01 - PAD_VALUE, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + PAD_VALUE
    mm = (F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False) >= 0.5).float()
    # intensity: gamma, contrast, brightness, speckle-ish noise, occasional blur
    gamma = torch.exp((u(b, 1, 1, 1) * 2 - 1) * math.log(1.4))
    x = x.clamp(0, 1) ** gamma
    x = (x - 0.5) * (1 + (u(b, 1, 1, 1) * 2 - 1) * 0.2) + 0.5 + (u(b, 1, 1, 1) * 2 - 1) * 0.08
    x = x * (1 + 0.06 * torch.randn(x.shape, generator=gen))
    blur = u(b) < 0.2
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :]) / 16
        xb = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), k.view(1, 1, 3, 3))
        x = x.clone()
        x[blur] = xb
    return x.clamp(0, 1), mm


# ----------------------------------------------------------------------------- metrics

STRUCT8 = np.ones((3, 3), dtype=bool)


def postprocess(prob, thr, min_area):
    lab, n = ndimage.label(prob >= thr, structure=STRUCT8)
    if n == 0:
        return lab, 0
    areas = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    keep = np.zeros(n + 1, dtype=bool)
    keep[1:] = areas >= min_area
    lab = np.where(keep[lab], lab, 0)
    # relabel
    uniq = np.unique(lab[lab > 0])
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[uniq] = np.arange(1, len(uniq) + 1)
    return remap[lab], len(uniq)


def evaluate(probs, masks, thr, min_area, iou_thr=0.3):
    """probs [N,H,W] float, masks [N,H,W] {0,1}. Returns dict of segmentation + lesion-level metrics."""
    dices, inter_all, sum_all = [], 0.0, 0.0
    tp_lesions = n_lesions = fp = 0
    for p, g in zip(probs, masks):
        plab, npred = postprocess(p, thr, min_area)
        pm = plab > 0
        gl, ngt = ndimage.label(g > 0, structure=STRUCT8)
        if g.any():
            inter = np.logical_and(pm, g > 0).sum()
            s = pm.sum() + (g > 0).sum()
            dices.append(2 * inter / s if s else 1.0)
            inter_all += inter
            sum_all += s
        # IoU matrix between predicted and GT components
        iou = np.zeros((npred, ngt))
        if npred and ngt:
            for i in range(1, npred + 1):
                pi = plab == i
                ov = np.bincount(gl[pi], minlength=ngt + 1)[1:]
                for j in np.nonzero(ov)[0]:
                    gj = (gl == j + 1)
                    iou[i - 1, j] = ov[j] / (pi.sum() + gj.sum() - ov[j])
        n_lesions += ngt
        if ngt:
            tp_lesions += int((iou >= iou_thr).any(axis=0).sum()) if npred else 0
        fp += int((~(iou >= iou_thr).any(axis=1)).sum()) if ngt else npred
    return {
        "diceLesionImages": float(np.mean(dices)) if dices else float("nan"),
        "diceLesionImagesPooled": float(2 * inter_all / sum_all) if sum_all else float("nan"),
        "lesionSensitivity": tp_lesions / max(1, n_lesions),
        "fpPerImage": fp / len(probs),
        "nLesions": int(n_lesions),
        "nDetected": int(tp_lesions),
        "nFalsePositives": int(fp),
        "nImages": int(len(probs)),
    }


def choose_postprocessing(probs, masks, max_fp=0.5):
    """Grid over threshold and min area: maximise lesion sensitivity with FP/image <= max_fp,
    then Dice. Returns (thr, min_area, metrics, table)."""
    best, table = None, []
    for thr in [0.3, 0.4, 0.5, 0.6, 0.7]:
        for area in [0, 16, 32, 64, 96, 128, 192, 256]:
            m = evaluate(probs, masks, thr, area)
            table.append((thr, area, m))
            ok = m["fpPerImage"] <= max_fp
            key = (ok, round(m["lesionSensitivity"], 3) if ok else -m["fpPerImage"], m["diceLesionImages"])
            if best is None or key > best[0]:
                best = (key, thr, area, m)
    return best[1], best[2], best[3], table


# ----------------------------------------------------------------------------- training

def dice_loss(logits, target, eps=1.0):
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    den = p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    return (1 - (2 * inter + eps) / (den + eps)).mean()


@torch.no_grad()
def predict(model, x_norm, bs=16):
    model.eval()
    segs, clss = [], []
    for s in range(0, len(x_norm), bs):
        seg, cls = model(x_norm[s:s + bs])
        segs.append(torch.sigmoid(seg))
        clss.append(torch.sigmoid(cls))
    return torch.cat(segs)[:, 0].numpy(), torch.cat(clss)[:, 0].numpy()


def train(args, X, M, cls, tr, va, mean, std):
    os.makedirs(CKPT_DIR, exist_ok=True)
    ckpt_path = os.path.join(CKPT_DIR, "last.pt")
    gen = torch.Generator().manual_seed(SEED)
    model = TinyUNet()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    xtr = torch.from_numpy(X[tr]).float().unsqueeze(1) / 255.0
    mtr = torch.from_numpy(M[tr]).float().unsqueeze(1)
    ytr = torch.from_numpy((cls[tr] == "malignant").astype(np.float32))
    xva = (torch.from_numpy(X[va]).float().unsqueeze(1) / 255.0 - mean) / std
    steps_per_epoch = math.ceil(len(tr) / args.batch)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.1)
    start_epoch, history = 0, []
    if os.path.exists(ckpt_path) and args.resume:
        ck = torch.load(ckpt_path)
        model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"]); sched.load_state_dict(ck["sched"])
        gen.set_state(ck["gen"]); start_epoch = ck["epoch"] + 1; history = ck["history"]
        print(f"resumed at epoch {start_epoch}", flush=True)
    t0 = time.time() - (history[-1]["elapsedS"] if history else 0.0)  # elapsed counts across resumes
    for ep in range(start_epoch, args.epochs):
        model.train()
        perm = torch.randperm(len(tr), generator=gen)
        tot = 0.0
        for s in range(0, len(tr), args.batch):
            bi = perm[s:s + args.batch]
            if len(bi) < 2:
                continue
            x, m = augment(xtr[bi], mtr[bi], gen)
            x = (x - mean) / std
            seg, c = model(x)
            loss = F.binary_cross_entropy_with_logits(seg, m) + dice_loss(seg, m) \
                + args.cls_weight * F.binary_cross_entropy_with_logits(c[:, 0], ytr[bi])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(bi)
        rec = {"epoch": ep, "loss": tot / len(tr), "elapsedS": round(time.time() - t0, 1)}
        if ep % 3 == 2 or ep == args.epochs - 1:
            pv, cv = predict(model, xva)
            mv = evaluate(pv, M[va], 0.5, 64)
            yv = cls[va]
            les = yv != "normal"
            rec.update(dice=round(mv["diceLesionImages"], 4), sens=round(mv["lesionSensitivity"], 3),
                       fp=round(mv["fpPerImage"], 3),
                       aucBM=round(roc_auc_score(yv[les] == "malignant", cv[les]), 4))
        history.append(rec)
        print(json.dumps(rec), flush=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "gen": gen.get_state(), "epoch": ep, "history": history, "mean": mean, "std": std,
                    "epochs": args.epochs}, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)
        if time.time() - t0 > args.max_minutes * 60:
            print(f"time budget reached after epoch {ep}; stopping early", flush=True)
            break
    return model, history, time.time() - t0


# ----------------------------------------------------------------------------- ONNX + ORT

def training_seconds(history):
    """Total training wall time from the per-epoch records (tolerates a clock reset at a resume)."""
    total, last = 0.0, 0.0
    for h in history:
        if h["elapsedS"] < last:
            total += last
        last = h["elapsedS"]
    return total + last if history else None


def build_export_module(model, with_malignancy):
    """Module image -> (lesion_probability[, malignancy_probability]), sigmoid inside the graph."""
    model.eval()
    model.with_malignancy = True
    wrapper = ExportWrapper(model).eval()
    if with_malignancy:
        return wrapper, ["lesion_probability", "malignancy_probability"]

    class SegOnly(torch.nn.Module):
        def __init__(self, w):
            super().__init__()
            self.w = w

        def forward(self, image):
            return self.w(image)[0]

    return SegOnly(wrapper).eval(), ["lesion_probability"]


def ort_bench(model_path, runs=50, warmup=10):
    """Median latency of one 1x1x256x256 image in onnxruntime-node with intraOpNumThreads 1."""
    res = subprocess.run(["node", os.path.join(HERE, "ort_bench.js"), str(model_path), str(runs), str(warmup)],
                         cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", nargs="?", default=os.path.join(REPO, "..", "shared", "datasets", "busi"))
    ap.add_argument("--epochs", type=int, default=36)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--cls-weight", type=float, default=0.3)
    ap.add_argument("--max-minutes", type=float, default=50.0, help="wall-clock cap on training (safety stop)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on a shared machine)")
    ap.add_argument("--resume", action="store_true", help="continue from training/medical/checkpoints/last.pt")
    ap.add_argument("--export-only", action="store_true", help="skip training, export the last checkpoint")
    args = ap.parse_args()

    seed_everything(SEED, threads=args.threads)
    t_load = time.time()
    X, M, cls, ids = load_busi(args.dataset)
    tr, va = make_split(ids, cls)
    mean = float(X[tr].astype(np.float64).mean() / 255.0)
    std = float(X[tr].astype(np.float64).std() / 255.0)
    print(f"loaded {len(ids)} images in {time.time() - t_load:.1f}s; train {len(tr)} val {len(va)}; "
          f"mean {mean:.6f} std {std:.6f}", flush=True)

    if args.export_only:
        ck = torch.load(os.path.join(CKPT_DIR, "last.pt"))
        model = TinyUNet()
        model.load_state_dict(ck["model"])
        history = ck["history"]
        mean, std = ck["mean"], ck["std"]
        planned = ck.get("epochs")
        train_s = training_seconds(history)
    else:
        model, history, train_s = train(args, X, M, cls, tr, va, mean, std)
        planned = args.epochs
    epochs_done = history[-1]["epoch"] + 1 if history else 0
    model.eval()

    # malignancy usefulness (PyTorch), decides whether the head is exported
    xva = ((X[va].astype(np.float32) / 255.0 - mean) / std)[:, None].astype(np.float32)
    _, cv_torch = predict(model, torch.from_numpy(xva))
    yv = cls[va]
    les = yv != "normal"
    auc_bm = float(roc_auc_score(yv[les] == "malignant", cv_torch[les]))
    with_mal = auc_bm >= MALIGNANCY_MIN_AUC
    print(f"malignancy AUC (benign vs malignant, PyTorch) {auc_bm:.4f}; keep head: {with_mal}", flush=True)

    os.makedirs(OUT_DIR, exist_ok=True)
    onnx_path = os.path.join(OUT_DIR, "model.onnx")
    module, out_names = build_export_module(model, with_mal)
    common_export_onnx(module, {"image": torch.zeros(1, 1, SIZE, SIZE)}, onnx_path, out_names)

    # parity: onnxruntime-node vs PyTorch on all validation images (asserts <= 1e-4)
    parity = {n: 0.0 for n in out_names}
    ort = {n: [] for n in out_names}
    for s in range(0, len(xva), 32):
        xb = xva[s:s + 32]
        with torch.no_grad():
            ref = module(torch.from_numpy(xb))
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = ort_parity(onnx_path, {"image": xb}, dict(zip(out_names, ref)))
        for n, r in zip(out_names, ref):
            parity[n] = max(parity[n], float(np.abs(got[n].astype(np.float64) - r.numpy()).max()))
            ort[n].append(got[n])
    ort = {n: np.concatenate(v) for n, v in ort.items()}
    print(f"ORT parity max abs diff: {parity}", flush=True)

    # threshold / min area + metrics from the ONNX outputs
    probs = ort["lesion_probability"][:, 0]
    thr, min_area, met, table = choose_postprocessing(probs, M[va])
    auc_all = None
    if with_mal:
        cv = ort["malignancy_probability"][:, 0]
        auc_bm = float(roc_auc_score(yv[les] == "malignant", cv[les]))
        auc_all = float(roc_auc_score(yv == "malignant", cv))
    bench = ort_bench(onnx_path)
    print(f"chosen threshold {thr} minArea {min_area}: {met}; malignancy AUC {auc_bm}, {auc_all}; bench {bench}",
          flush=True)

    write_outputs(args, onnx_path, mean, std, thr, min_area, met, with_mal, auc_bm, auc_all, parity, bench,
                  train_s, epochs_done, planned, history, tr, va, cls, table)


def write_outputs(args, onnx_path, mean, std, thr, min_area, met, with_mal, auc_bm, auc_all, parity, bench,
                  train_s, epochs_done, planned, history, tr, va, cls, table):
    n_cls = lambda idx: {c: int((cls[idx] == c).sum()) for c in ["benign", "malignant", "normal"]}  # noqa: E731
    split = {"method": "by image, stratified by class, sklearn train_test_split(test_size=0.2, random_state=seed)",
             "seed": SEED, "train": n_cls(tr), "validation": n_cls(va)}
    outputs = [{"name": "lesion_probability", "dtype": "float32", "shape": [-1, 1, SIZE, SIZE],
                "description": "per-pixel lesion probability (sigmoid applied), same 256x256 grid as the letterboxed input"}]
    labels = ["lesion"]
    if with_mal:
        outputs.append({"name": "malignancy_probability", "dtype": "float32", "shape": [-1, 1],
                        "description": "image-level probability of a malignant lesion (vs benign lesion or no lesion)"})
        labels = ["lesion", "malignant"]
    ms = round(bench["medianMs"], 2)
    max_diff = max(parity.values())
    metrics = {
        "split": "validation",
        "computedFrom": "onnxruntime-node outputs of model.onnx",
        "nValidationImages": met["nImages"],
        "nValidationLesionImages": int((cls[va] != "normal").sum()),
        "diceLesionImages": round(met["diceLesionImages"], 4),
        "diceLesionImagesPooled": round(met["diceLesionImagesPooled"], 4),
        "lesionSensitivity": round(met["lesionSensitivity"], 4),
        "lesionIoUThreshold": 0.3,
        "falsePositivesPerImage": round(met["fpPerImage"], 4),
        "nLesions": met["nLesions"], "nDetected": met["nDetected"], "nFalsePositives": met["nFalsePositives"],
        "inferenceMsPerImage": ms,
        "inferenceMeasurement": "onnxruntime-node 1.30 CPU, intraOpNumThreads 1, batch 1, median of "
                                f"{bench['runs']} runs after {bench['warmup']} warm-up",
        "parityMaxAbsDiff": float(f"{max_diff:.3g}"),
    }
    if with_mal:
        metrics["malignancyAucBenignVsMalignant"] = round(auc_bm, 4)
        metrics["malignancyAucMalignantVsRest"] = round(auc_all, 4)
    else:
        metrics["malignancyHeadDroppedAuc"] = round(auc_bm, 4)
    manifest = {
        "name": NAME,
        "version": VERSION,
        "domain": "medical",
        "task": "lesion-segmentation",
        "description": "Lesion probability map for a grayscale breast ultrasound image (letterboxed to 256x256)"
                       + (" plus an image-level malignancy probability" if with_mal else "")
                       + ". Research / decision-support reference model, not for diagnosis.",
        "default": True,
        "inputs": [{"name": "image", "dtype": "float32", "shape": [-1, 1, SIZE, SIZE],
                    "description": "grayscale image letterboxed to 256x256 (top-left aligned, padded bottom/right), "
                                   "((pixel/255) - mean) / std"}],
        "outputs": outputs,
        "preprocessing": {
            "type": "grayscale-letterbox", "inputSize": [SIZE, SIZE], "resize": "letterbox",
            "letterboxAlign": "top-left (pad bottom/right)", "interpolation": "bilinear",
            "padValue": PAD_VALUE, "scaleTo01": True, "mean": mean, "std": std, "modalities": ["US"],
        },
        "postprocessing": {"threshold": thr, "minAreaPx": min_area, "connectivity": 8},
        "labels": labels,
        "thresholds": {"lesion": thr},
        "provenance": {
            "dataset": "BUSI (Breast Ultrasound Images), training part in ../shared/datasets/busi (623 images)",
            "source": "Al-Dhabyani W, Gomaa M, Khaled H, Fahmy A. Dataset of breast ultrasound images. "
                      "Data in Brief 28 (2020) 104863. doi:10.1016/j.dib.2019.104863",
            "license": "see source (published by its authors for research use; the shared datasets README states no licence)",
            "trainingScript": "training/medical/train_breast_us_lesion.py",
            "split": split,
            "seed": SEED,
            "epochs": epochs_done,
            "plannedEpochs": planned,
            "trainingSeconds": round(train_s, 1) if train_s else None,
            "framework": f"torch {torch.__version__}, ONNX opset 17",
        },
        "metrics": metrics,
        "batching": {"maxBatchSize": 8, "maxQueueDelayMs": 2},
    }
    write_manifest(OUT_DIR, manifest)

    def fmt_counts(d):
        return f"{sum(d.values())} images (" + ", ".join(f"{v} {k}" for k, v in d.items()) + ")"

    n_params = sum(p.numel() for p in TinyUNet().parameters())
    size_mb = os.path.getsize(onnx_path) / 1e6
    hist_rows = [(h["epoch"] + 1, round(h["loss"], 4), h["dice"], h["sens"], h["fp"], h["aucBM"])
                 for h in history if "dice" in h]
    grid_rows = [(t, a, round(m["diceLesionImages"], 3), round(m["lesionSensitivity"], 3), round(m["fpPerImage"], 3))
                 for t, a, m in table if a in (0, 32, 64, 128, 256) or (t == thr and a == min_area)]
    n_les_img = int((cls[va] != "normal").sum())
    metric_rows = [
        (f"Dice, mean over validation images with a lesion ({n_les_img})", f"{met['diceLesionImages']:.3f}"),
        ("Dice, pooled over those images", f"{met['diceLesionImagesPooled']:.3f}"),
        ("Lesion-level sensitivity (IoU >= 0.3)", f"{met['lesionSensitivity']:.3f} ({met['nDetected']}/{met['nLesions']})"),
        (f"False positives per image (all {met['nImages']} images, normal included)",
         f"{met['fpPerImage']:.3f} ({met['nFalsePositives']})"),
    ]
    if with_mal:
        metric_rows += [("Malignancy AUC, benign vs malignant (lesion images)", f"{auc_bm:.3f}"),
                        ("Malignancy AUC, malignant vs benign + normal (all images)", f"{auc_all:.3f}")]
    metric_rows += [("Inference, ms/image (onnxruntime-node, 1 intra-op thread)", f"{ms:.2f}"),
                    ("ONNX (onnxruntime-node) vs PyTorch, max abs difference", f"{max_diff:.2e}")]
    mal_io = (
        "- `malignancy_probability` float32 `[-1, 1]`: image-level probability that the image shows a malignant "
        "lesion (trained as malignant vs benign or normal). A screening-style score, not a diagnosis.\n"
        if with_mal else
        f"- No malignancy output: the malignancy head reached a benign-vs-malignant AUC of {auc_bm:.3f} on "
        f"validation, below the {MALIGNANCY_MIN_AUC} bar for keeping it, so it is not exported.\n")
    sections = [
        ("Data source and licence", f"""
- **Source**: BUSI, Breast Ultrasound Images (Al-Dhabyani W, Gomaa M, Khaled H, Fahmy A. *Dataset of breast
  ultrasound images*. Data in Brief 28 (2020) 104863). B-mode images of women aged 25-75 collected in 2018 at
  Baheya Hospital, Cairo, Egypt, with radiologist-drawn lesion masks.
- **Licence**: see the source; the dataset is published by its authors for research use (the shared datasets
  README states no licence). The data is not in this repository; the script reads `../shared/datasets/busi`.
- **Used here**: the training part in `../shared/datasets/busi`, 623 images (352 benign, 163 malignant,
  108 normal), grayscale, longest side 320 px, one mask per image (union of its lesions). About a fifth of
  BUSI is held back elsewhere for independent evaluation and was never seen.
"""),
        ("Intended use", """
- Research, education and **decision support**: highlight candidate lesion regions in a B-mode breast
  ultrasound image (DICOM modality `US`) for a qualified reader.
- **Not a diagnostic device.** Do not use it to diagnose, to rule out cancer, or to triage patients without a
  clinician's review. It has no clinical validation or regulatory clearance.
- **Out of scope**: other modalities (mammography, CT, MR, PET), Doppler or elastography overlays, other
  organs, automated reporting, paediatric or male patients, images from scanners or presets very unlike BUSI.
"""),
        ("Features", f"""
- Input `image` float32 `[-1, 1, 256, 256]`: grayscale image letterboxed to 256x256: scale the longest side
  to 256 (bilinear), keep the aspect ratio, place the image at the **top-left** and pad the **bottom/right**
  with {PAD_VALUE} (on the 0-1 scale); then `((pixel / 255) - {mean:.6f}) / {std:.6f}`.
- Output `lesion_probability` float32 `[-1, 1, 256, 256]`: per-pixel lesion probability (sigmoid in the graph)
  on the letterboxed grid. Map back by cropping the padding and scaling by original longest side / 256.
{mal_io}- Post-processing (chosen on validation): threshold **{thr}**, 8-connected components, components smaller
  than **{min_area} px** (at 256x256) discarded; each remaining component is one predicted lesion.
- Network: small U-Net ({n_params / 1e6:.2f} M parameters, {size_mb:.2f} MB ONNX, opset 17, dynamic batch) that
  average-pools the input to 128x128 internally and upsamples its logits back to 256x256; a linear head on
  the pooled bottleneck gives the malignancy logit.
- Training: BCE + soft Dice (+ {args.cls_weight} x BCE for malignancy), AdamW, one-cycle LR (max {args.lr}),
  batch {args.batch}, {epochs_done} of {planned} planned epochs, seed {SEED}, CPU only, training time
  {(train_s or 0) / 60:.1f} min on a shared 2-core machine. Augmentation: horizontal flip, rotation +-12 deg,
  scale x1/1.15-1.15, translation +-8 %, gamma, contrast, brightness, multiplicative noise, occasional blur.
- Reproduce: `/usr/bin/python3 training/medical/train_breast_us_lesion.py ../shared/datasets/busi`
"""),
        ("Validation metrics", f"""
Split: fixed, by image, stratified by class, 80/20, seed {SEED}: train {fmt_counts(split['train'])};
validation {fmt_counts(split['validation'])}. Every number is computed from the **ONNX model run in onnxruntime-node** on the
validation split. The threshold and minimum area were chosen on the same split (maximise lesion sensitivity
subject to <= 0.5 false positives per image, then Dice), so expect somewhat lower values on unseen images.

{md_table(['metric', 'value'], metric_rows)}

Definitions: predicted lesions are 8-connected components of `lesion_probability >= threshold` with area
>= minAreaPx; true lesions are 8-connected components of the ground-truth mask letterboxed to 256x256. A true
lesion is detected when a predicted lesion has IoU >= 0.3 with it; a predicted lesion with IoU < 0.3 against
every true lesion is a false positive. Dice uses the post-processed mask.

Threshold / minimum-area grid (validation, ONNX outputs):

{md_table(['threshold', 'minAreaPx', 'Dice', 'sensitivity', 'FP/image'], grid_rows)}

Training curve (validation, PyTorch, threshold 0.5, min area 64):

{md_table(['epoch', 'train loss', 'Dice', 'sensitivity', 'FP/image', 'malignancy AUC (B vs M)'], hist_rows)}

Published reference (same dataset, other splits): U-Net variants reach Dice about 0.70-0.80, usually with
pretrained encoders on GPUs; this model is deliberately small and trained from scratch on a CPU.
"""),
        ("Inference time", f"""
{ms:.2f} ms per image (median of {bench['runs']} runs after {bench['warmup']} warm-up, p90 {bench['p90Ms']:.2f} ms),
batch 1, onnxruntime-node 1.30 CPU execution provider, `intraOpNumThreads: 1`, measured on the shared 2-core
training machine (other processes running), with `training/medical/ort_bench.js`.
"""),
        ("Limitations", f"""
- Single dataset from a single site (one hospital, one scanner family, one country, 2018); no external
  validation. Performance on other scanners, probes, presets or populations is unknown.
- Small validation split ({met['nImages']} images, {met['nLesions']} lesions): the metrics have wide confidence intervals.
- Images were downsized to 320 px, then 256 px (128 px inside the network): very small lesions may be missed
  and boundaries are coarse. Inputs with a very different aspect ratio or field of view were not seen.
- Masks are a union per image; touching lesions may merge into one predicted component.
- Ultrasound only: not for CT, MR, mammography or any other modality (`preprocessing.modalities` = `["US"]`).
- Normal images are a small part of BUSI; the false-positive rate in real (mostly normal) populations may differ.
"""),
        ("Fairness", """
- BUSI covers only women aged 25-75 from one Egyptian hospital. No per-patient metadata (age, ethnicity, breast
  density, BMI) is distributed, so subgroup performance could not be measured and may differ for other
  populations, breast densities and equipment.
- Malignant cases are about a quarter of the data; benign lesions dominate training.
- Evaluate on local data stratified by age, density and device before any clinical-adjacent use.
"""),
    ]
    write_model_card(OUT_DIR, "Model card: breast-us-lesion v1", sections)
    print("wrote", OUT_DIR, flush=True)


if __name__ == "__main__":
    main()
