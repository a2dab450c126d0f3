"""A tiny diffusers UNet trained the way diffusers' example scripts do it, with lcsc recording.

The loop follows ``examples/unconditional_image_generation/train_unconditional.py``: accelerate
``save_state`` every ``every`` steps into ``checkpoint-<step>/``, with save hooks that write
``unet/`` and ``unet_ema/`` (``EMAModel``) via ``save_pretrained``. The lcsc lines are the
snippet of docs/trajectories.md: a ``Recorder`` fed the unwrapped model after each optimizer
step, on the main process.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from lcsc.trajectory import Recorder


def tiny_unet(seed: int = 0):  # type: ignore[no-untyped-def]
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(4, 8),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=2,
    )


def train(out: Path, steps: int = 20, every: int = 5, shard: bool = False) -> Path:
    """Train, saving ``out/checkpoint-<step>/`` and recording ``out/../recorded``."""
    from accelerate import Accelerator
    from diffusers import UNet2DModel
    from diffusers.training_utils import EMAModel

    accelerator = Accelerator(cpu=True)
    model = tiny_unet()
    ema_model = EMAModel(
        model.parameters(), decay=0.9, model_cls=UNet2DModel, model_config=model.config
    )
    shard_size = "20KB" if shard else "10GB"

    def save_model_hook(models, weights, output_dir):  # type: ignore[no-untyped-def]
        if accelerator.is_main_process:
            ema_model.save_pretrained(os.path.join(output_dir, "unet_ema"))
            for m in models:
                m.save_pretrained(os.path.join(output_dir, "unet"), max_shard_size=shard_size)
                weights.pop()

    accelerator.register_save_state_pre_hook(save_model_hook)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = accelerator.prepare(model, optimizer)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(16, 1, 8, 8, generator=g)
    global_step = 0
    # The snippet of docs/trajectories.md (where the model is called unet).
    rec = Recorder(out.parent / "recorded", every=every) if accelerator.is_main_process else None
    for _ in range(steps):
        noise = torch.randn(images.shape, generator=g)
        t = torch.randint(0, 1000, (images.shape[0],), generator=g)
        loss = F.mse_loss(model(images + noise, t).sample, noise)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        if accelerator.sync_gradients:
            ema_model.step(model.parameters())
            global_step += 1
            if rec is not None:
                rec.update(accelerator.unwrap_model(model), global_step)
            if global_step % every == 0:
                accelerator.save_state(str(out / f"checkpoint-{global_step}"))
    if rec is not None:
        rec.close()
    return out
