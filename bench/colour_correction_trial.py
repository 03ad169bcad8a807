"""Trial, not shipped: would a blind global colour correction in front of the bundle close the old-photo gap?

Usage: python bench/colour_correction_trial.py [--train x] [--val val-old-photo,val-bopbtl] [--n 100]
                                              [--steps 5000] [--variant affine|gray-safe]
                                              [--photos ../shared/data/real_old_photos] [--sheet PATH]

``bench/damage_breakdown.py`` shows that a per-image affine colour fit (an oracle that sees the clean
image) lifts old-photo inputs by about 5 dB. This asks how much of that a *blind* estimate gets:
an MLP reads colour statistics of the degraded image (per-channel percentiles, means, spreads,
covariances, chroma by luminance band, saturation percentiles and histograms) and predicts a 3×4
affine correction, trained with a per-sample log-MSE on 1,024 undamaged pixels of each training
pair. ``gray-safe`` restricts it to a luminance gain and offset plus a matrix on chroma only, so a
gray photo stays gray. It reports, on each validation set's damaged samples, the input, the correction alone, the
bundle's restoration and the restoration of the corrected input (PSNR/SSIM), and writes a sheet
of real old photos: input | restored | corrected, then restored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

QUANTILES = np.array([1, 2, 5, 10, 25, 50, 75, 90, 95, 98, 99], float)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def colour_features(img: np.ndarray) -> np.ndarray:
    """Global colour statistics of an RGB uint8 image (108 values)."""
    x = img.reshape(-1, 3).astype(np.float32) / 255
    lum = x @ LUMA
    chroma = x - lum[:, None]
    band = np.digitize(lum, np.percentile(lum, [20, 40, 60, 80]))
    by_band = [chroma[band == k].mean(0) if (band == k).any() else np.zeros(3, np.float32) for k in range(5)]
    sat = np.sqrt((chroma**2).sum(1))
    hist = np.concatenate([np.histogram(x[:, c], 16, (0, 1))[0] for c in range(3)]) / len(x)
    return np.concatenate(
        [
            np.percentile(x, QUANTILES, axis=0).T.ravel(),
            x.mean(0),
            x.std(0),
            np.cov(x.T)[np.triu_indices(3, 1)],
            np.ravel(by_band),
            np.percentile(sat, [50, 90, 99]),
            hist,
        ]
    ).astype(np.float32)


def make_net(n_features: int, variant: str):
    import torch
    from torch import nn

    class ColourNet(nn.Module):
        """Statistics → 3×4 affine colour transform, starting at the identity."""

        def __init__(self) -> None:
            super().__init__()
            self.mlp = nn.Sequential(nn.Linear(n_features, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, 12))
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)
            self.register_buffer("mu", torch.zeros(n_features))
            self.register_buffer("sd", torch.ones(n_features))

        def forward(self, f):
            o = self.mlp((f - self.mu) / self.sd)
            eye = torch.eye(3)
            if variant == "affine":
                return o.view(-1, 3, 4) + torch.cat([eye, torch.zeros(3, 1)], 1)
            to_lum = torch.ones(3, 1) * torch.from_numpy(LUMA)[None]  # x ↦ its luminance in every channel
            a = (1 + o[:, 0])[:, None, None] * to_lum + (eye + o[:, 3:12].view(-1, 3, 3)) @ (eye - to_lum)
            return torch.cat([a, o[:, 1, None, None].expand(-1, 3, 1)], 2)

    return ColourNet()


def correct(img: np.ndarray, a: np.ndarray) -> np.ndarray:
    return (np.clip((img / 255.0) @ a[:, :3].T + a[:, 3], 0, 1) * 255 + 0.5).astype(np.uint8)


def load(name: str, n: int | None = None):
    from pipelines import open_dataset

    ds = open_dataset(name)
    idx = np.arange(min(n or len(ds), len(ds)))
    return ds.read_many("degraded", idx), ds.read_many("clean", idx), ds.read_many("mask", idx)


def train(args):
    import torch
    from rich.progress import track

    deg, clean, mask = load(args.train)
    feats = np.stack([colour_features(d) for d in track(deg, description="features", transient=True)])
    rng = np.random.default_rng(0)
    px = 1024
    pd, pc = np.zeros((len(deg), px, 3), np.float32), np.zeros((len(deg), px, 3), np.float32)
    for i in range(len(deg)):
        ok = np.flatnonzero(mask[i].ravel() < 128)
        ok = ok if len(ok) >= px else np.arange(mask[i].size)
        j = rng.choice(ok, px, replace=False)
        pd[i], pc[i] = deg[i].reshape(-1, 3)[j] / 255, clean[i].reshape(-1, 3)[j] / 255
    net = make_net(feats.shape[1], args.variant)
    net.mu.copy_(torch.from_numpy(feats.mean(0)))
    net.sd.copy_(torch.from_numpy(feats.std(0) + 1e-6))
    f, pd, pc = torch.from_numpy(feats), torch.from_numpy(pd), torch.from_numpy(pc)
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-3)
    g = torch.Generator().manual_seed(0)
    for step in track(range(args.steps), description="train", transient=True):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * min(1.0, (args.steps - step) / (0.5 * args.steps))
        i = torch.randint(len(f), (256,), generator=g)
        a = net(f[i])
        err = torch.einsum("bij,bnj->bni", a[:, :, :3], pd[i]) + a[:, None, :, 3] - pc[i]
        loss = torch.log((err**2).mean((1, 2)) + 1e-5).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", default="x")
    ap.add_argument("--val", default="val-old-photo,val-bopbtl")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--variant", choices=("affine", "gray-safe"), default="affine")
    ap.add_argument("--bundle", default="default")
    ap.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/real_old_photos")
    ap.add_argument("--sheet", type=Path, default=None)
    args = ap.parse_args()

    import cv2
    import torch

    from degrade.io import list_images, read_image
    from degrade.sheet import contact_sheet, save_sheet
    from zoo.bundle import load_bundle
    from zoo.metrics import psnr, ssim
    from zoo.restore import detect_mask, translate

    torch.set_num_threads(2)
    net = train(args)
    b = load_bundle(args.bundle)

    def predict(img):
        with torch.no_grad():
            return net(torch.from_numpy(colour_features(img))[None])[0].numpy()

    print(f"variant {args.variant}, {args.steps} steps on {args.train}; PSNR dB / SSIM, first {args.n} samples")
    print("| dataset | input | correction alone | restored | corrected, then restored |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.val.split(","):
        rows: dict[str, list] = {}
        for d, c, _ in zip(*load(name, args.n)):
            if np.array_equal(d, c):  # undamaged samples (PSNR infinite) are left out of every column
                continue
            m = detect_mask(b, d)
            t = correct(d, predict(d))
            for k, img in (("input", d), ("tone", t), ("restored", translate(b, d, m)), ("both", translate(b, t, m))):
                rows.setdefault(k, []).append((psnr(img, c), ssim(img, c)))
        cells = [f"{np.mean([p for p, _ in v]):.2f} / {np.mean([s for _, s in v]):.3f}" for v in rows.values()]
        print(f"| {name} ({len(rows['input'])} damaged) | " + " | ".join(cells) + " |")

    if args.sheet:
        tiles, labels = [], []
        for p in sorted(list_images([args.photos]))[::20][:12]:
            im = read_image(p).rgb()
            s = 320 / max(im.shape[:2])
            im = cv2.resize(im, (int(im.shape[1] * s), int(im.shape[0] * s)), interpolation=cv2.INTER_AREA)
            m = detect_mask(b, im)
            tiles += [im, translate(b, im, m), translate(b, correct(im, predict(im)), m)]
            labels += [p.name[:24], "restored", f"{args.variant}, then restored"]
        save_sheet(contact_sheet(tiles, labels, ncols=3, tile_size=320, title="colour-correction trial", label_lines=1), args.sheet)
        print(f"sheet: {args.sheet}")


if __name__ == "__main__":
    main()
