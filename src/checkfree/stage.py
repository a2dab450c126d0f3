"""One pipeline stage's live state: its weights, optimizer, last gradient norm and replicas.

A :class:`StageWorker` runs the forward and backward *visits* a micro-batch makes to its stage
(see :mod:`checkfree.pipeline`) and its optimizer step. Everything a stage owns is exported
as one flat mapping of named tensors (:meth:`StageWorker.state_tensors`), whose names and shapes
:func:`state_shapes` knows from the architecture alone; that is what checkpoints, replicas and
recovery messages carry:

    param/<name>                    the stage's parameters
    adam/<name>/{exp_avg,exp_avg_sq,step}   its AdamW state
    meta/grad_norm, meta/lr_factor  the last clipped gradient norm and the learning-rate factor
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
import torch.nn.functional as F

from checkfree.config import ModelConfig, TrainConfig
from checkfree.model import BLOCK_PREFIX, Stage, build_stage

Shapes = dict[str, tuple[tuple[int, ...], torch.dtype]]
_ADAM = ("exp_avg", "exp_avg_sq", "step")


def param_shapes(config: ModelConfig, index: int) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of stage ``index`` (built on the meta device: no memory)."""
    with torch.device("meta"):
        stage = Stage(config, index)
    return {name: tuple(p.shape) for name, p in stage.named_parameters()}


def state_shapes(config: ModelConfig, index: int) -> Shapes:
    """Names, shapes and dtypes of :meth:`StageWorker.state_tensors` for stage ``index``."""
    out: Shapes = {}
    for name, shape in param_shapes(config, index).items():
        out[f"param/{name}"] = (shape, torch.float32)
        out[f"adam/{name}/exp_avg"] = (shape, torch.float32)
        out[f"adam/{name}/exp_avg_sq"] = (shape, torch.float32)
        out[f"adam/{name}/step"] = ((), torch.float32)
    out["meta/grad_norm"] = ((), torch.float64)
    out["meta/lr_factor"] = ((), torch.float64)
    return out


class StageWorker:
    """Stage ``index`` of a run: module, AdamW, saved activations, last gradient norm, replicas.

    Attributes:
        module: the :class:`~checkfree.model.Stage`.
        grad_norm: the stage's last gradient norm after clipping (CheckFree's weight, before
            the ``+ 1e-4``); 0 before the first update.
        lr_factor: multiplies the scheduled learning rate (``recovery_lr_factor`` after a
            neighbour-based recovery).
        replica: state this stage keeps for a neighbour (``redundant``: the whole state of
            stage ``index - 1``; ``checkfree+``: the embedding or the LM head), keyed as in
            :meth:`state_tensors`.
    """

    def __init__(
        self,
        config: TrainConfig,
        index: int,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config = config
        self.index = index
        self.device = torch.device(device)
        self.module = build_stage(config.model, index, generator).to(self.device)
        self.params = dict(self.module.named_parameters())
        self.grad_norm = 0.0
        self.lr_factor = 1.0
        self.replica: dict[str, torch.Tensor] = {}
        self._saved: dict[Hashable, tuple[torch.Tensor | None, torch.Tensor]] = {}
        self.optimizer = self._fresh_optimizer()

    def _fresh_optimizer(self) -> torch.optim.AdamW:
        opt = torch.optim.AdamW(
            self.params.values(),
            lr=self.config.lr,
            betas=(0.9, 0.95),
            weight_decay=self.config.weight_decay,
            foreach=False,
        )
        # Fill the state AdamW would create lazily, so it can be exported before any update.
        for p in self.params.values():
            opt.state[p] = {
                "step": torch.tensor(0.0),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
        return opt

    # -- visits -------------------------------------------------------------------------------

    def forward(
        self,
        key: Hashable,
        embed: bool,
        blocks: bool,
        head: bool,
        inp: torch.Tensor,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One visit: ``[b, T]`` tokens (``embed``) or ``[b, T, d]`` activations in; out the
        ``[b, T, d]`` activations or, with ``head``, the mean next-token cross-entropy (scalar).

        With gradients enabled the graph is kept under ``key`` for :meth:`backward`.
        """
        inp = inp.to(self.device)
        grad = torch.is_grad_enabled()
        if embed:
            x = self.module.embed_tokens(inp)
            leaf = None
        else:
            leaf = inp.requires_grad_(grad)
            x = leaf
        if blocks:
            x = self.module.run_blocks(x)
        if head:
            assert targets is not None
            logits = self.module.logits(x)
            x = F.cross_entropy(logits.flatten(0, 1), targets.to(self.device).flatten())
        if grad:
            self._saved[key] = (leaf, x)
        return x.detach()

    def backward(
        self, key: Hashable, grad: torch.Tensor | None, loss_scale: float
    ) -> torch.Tensor | None:
        """Backward through the visit saved under ``key``; returns d(loss)/d(input) or None.

        A head visit starts from its loss times ``loss_scale`` (``1 / micro_batches``: the
        iteration's loss is the mean over micro-batches); other visits from ``grad``.
        """
        leaf, out = self._saved.pop(key)
        if grad is None:
            (out * loss_scale).backward()
        else:
            out.backward(grad.to(self.device))
        return None if leaf is None else leaf.grad

    def step(self, lr: float) -> float:
        """Clip this stage's gradient norm to ``clip_norm``, then one AdamW update at
        ``lr * lr_factor``. Returns and remembers the clipped norm ``min(||g||_2, clip_norm)``.
        """
        params = list(self.params.values())
        norm = torch.nn.utils.clip_grad_norm_(params, self.config.clip_norm, foreach=False)
        self.grad_norm = min(float(norm), self.config.clip_norm)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * self.lr_factor
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return self.grad_norm

    def discard_iteration(self) -> None:
        """Forget a half-done iteration: its saved activations and accumulated gradients."""
        self._saved.clear()
        self.optimizer.zero_grad(set_to_none=True)

    # -- state --------------------------------------------------------------------------------

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything the stage owns, keyed as :func:`state_shapes` says (views, not copies)."""
        out: dict[str, torch.Tensor] = {}
        for name, p in self.params.items():
            out[f"param/{name}"] = p.detach()
            state = self.optimizer.state[p]
            for k in _ADAM:
                out[f"adam/{name}/{k}"] = state[k]
        out["meta/grad_norm"] = torch.tensor(self.grad_norm, dtype=torch.float64)
        out["meta/lr_factor"] = torch.tensor(self.lr_factor, dtype=torch.float64)
        return out

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Overwrite the whole state (weights, AdamW moments and step, meta) from ``tensors``."""
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(tensors[f"param/{name}"])
                state = self.optimizer.state[p]
                for k in _ADAM:
                    state[k].copy_(tensors[f"adam/{name}/{k}"])
        self.grad_norm = float(tensors["meta/grad_norm"])
        self.lr_factor = float(tensors["meta/lr_factor"])

    def block_tensors(self) -> dict[str, torch.Tensor]:
        """The transformer-block parameters (``blocks.<j>.*``): what CheckFree averages."""
        return {n: p.detach() for n, p in self.params.items() if n.startswith(BLOCK_PREFIX)}

    def load_params(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Overwrite the named parameters in ``tensors`` (others untouched)."""
        with torch.no_grad():
            for name, value in tensors.items():
                self.params[name].copy_(value)
