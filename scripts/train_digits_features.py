"""Train the packaged digits feature nets and write their weights into the package.

Deterministic (fixed seeds, one CPU thread, deterministic algorithms): re-running reproduces the
shipped files. Usage::

    python scripts/train_digits_features.py            # both nets -> src/lcsc/metrics/weights
    python scripts/train_digits_features.py --kind alt --epochs 10 --out-dir /tmp/w

Training uses the train split of :func:`lcsc.reference.digits.data.load_digits_split` with mild
augmentation (±1 pixel shifts, contrast jitter, Gaussian noise) so features stay meaningful on
imperfect generated samples; the printed accuracy is on the untouched test split.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import nn

from lcsc.checkpoint import write_checkpoint
from lcsc.metrics.features import DIGITS_ARCHS, WEIGHT_FILES
from lcsc.reference.digits.data import SPLIT_SEED, TEST_FRACTION, load_digits_split

SEEDS = {"main": 0, "alt": 1}  # different seeds: the two feature spaces must be independent
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "lcsc" / "metrics" / "weights"


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random ±1-pixel shifts, contrast jitter and noise on digits (N, 64) in [-1, 1]."""
    n = x.shape[0]
    # Pad with the background value -1 and crop at a random offset: a shift without wrap-around.
    padded = nn.functional.pad(x.reshape(n, 1, 8, 8), (1, 1, 1, 1), value=-1.0)
    dy = torch.randint(0, 3, (n,), generator=g)
    dx = torch.randint(0, 3, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(8))[:, :, None].expand(n, 8, 8)
    cols = (dx[:, None] + torch.arange(8))[:, None, :].expand(n, 8, 8)
    shifted = padded[torch.arange(n)[:, None, None], 0, rows, cols]
    scale = 0.8 + 0.3 * torch.rand(n, 1, 1, generator=g)
    sigma = 0.15 * torch.rand(n, 1, 1, generator=g)
    noisy = (shifted + 1.0) * scale - 1.0 + sigma * torch.randn(shifted.shape, generator=g)
    return noisy.clamp(-1.0, 1.0).reshape(n, 64)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    _, logits = model.features_and_logits(x)
    return float((logits.argmax(1) == y).float().mean())


def train(kind: str, epochs: int, batch_size: int = 64, lr: float = 2e-3) -> tuple[nn.Module, dict]:
    seed = SEEDS[kind]
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x_tr, y_tr, x_te, y_te = load_digits_split()
    model = DIGITS_ARCHS[kind]()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(x_tr) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.1
    )
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(x_tr), generator=g)
        total = 0.0
        for i in range(0, len(x_tr), batch_size):
            idx = perm[i : i + batch_size]
            _, logits = model.features_and_logits(augment(x_tr[idx], g))
            loss = nn.functional.cross_entropy(logits, y_tr[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if epoch % 20 == 0 or epoch == epochs:
            print(f"[{kind}] epoch {epoch:3d} loss {total / len(x_tr):.4f}")
    model.eval()
    noisy_te = augment(x_te, torch.Generator().manual_seed(1234))
    info = {
        "arch": type(model).__name__,
        "seed": str(seed),
        "epochs": str(epochs),
        "split_seed": str(SPLIT_SEED),
        "test_fraction": str(TEST_FRACTION),
        "train_accuracy": f"{accuracy(model, x_tr, y_tr):.4f}",
        "test_accuracy": f"{accuracy(model, x_te, y_te):.4f}",
        "test_accuracy_augmented": f"{accuracy(model, noisy_te, y_te):.4f}",
    }
    return model, info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["main", "alt", "both"], default="both")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    # Bitwise-reproducible CPU training.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for kind in ("main", "alt") if args.kind == "both" else (args.kind,):
        model, info = train(kind, args.epochs)
        out = args.out_dir / WEIGHT_FILES[kind]
        write_checkpoint(out, model.state_dict(), metadata=info)
        print(
            f"[{kind}] {info['arch']}: test accuracy {info['test_accuracy']}"
            f" (augmented test {info['test_accuracy_augmented']}) -> {out}"
            f" ({out.stat().st_size / 1024:.0f} KiB)"
        )


if __name__ == "__main__":
    main()
