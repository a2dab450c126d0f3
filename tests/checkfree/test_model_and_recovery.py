"""The model, the routes and the recovery formulas, checked by hand."""

from __future__ import annotations

import torch

from checkfree import ModelConfig, checkfree_weight, weighted_average
from checkfree.data import load_corpus, train_batch
from checkfree.model import build_stage
from checkfree.pipeline import Visit, route, routes
from checkfree.recovery import recovery_transfers
from checkfree.stage import StageWorker, state_shapes

from .conftest import tiny


def test_recovery_formula_against_a_hand_computation() -> None:
    left = {"w": torch.tensor([1.0, 2.0, -4.0]), "b": torch.tensor([[0.5]])}
    right = {"w": torch.tensor([3.0, 0.0, 8.0]), "b": torch.tensor([[-1.5]])}
    # Gradient norms 0.3 and 0.1 -> weights 0.3001 and 0.1001.
    w_l, w_r = checkfree_weight(0.3), checkfree_weight(0.1)
    assert (w_l, w_r) == (0.3 + 1e-4, 0.1 + 1e-4)
    out = weighted_average(left, right, w_l, w_r)
    hand_w = [
        (0.3001 * 1 + 0.1001 * 3) / 0.4002,
        (0.3001 * 2 + 0.1001 * 0) / 0.4002,
        (0.3001 * -4 + 0.1001 * 8) / 0.4002,
    ]
    torch.testing.assert_close(out["w"], torch.tensor(hand_w), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out["b"], torch.tensor([[(0.3001 * 0.5 - 0.1001 * 1.5) / 0.4002]]))
    # Equal weights are the plain average.
    torch.testing.assert_close(
        weighted_average(left, right, 1.0, 1.0)["w"], torch.tensor([2.0, 1.0, 2.0])
    )


def test_model_is_causal_and_stages_compose() -> None:
    config = ModelConfig(stages=3, dim=32, heads=2, seq_len=16)
    stages = [build_stage(config, i, torch.Generator().manual_seed(i)) for i in range(3)]
    tokens = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))

    def logits(t: torch.Tensor) -> torch.Tensor:
        x = stages[0].embed_tokens(t)
        for s in stages:
            x = s.run_blocks(x)
        return stages[2].logits(x)

    out = logits(tokens)
    assert out.shape == (2, 16, 256)
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 256
    torch.testing.assert_close(logits(changed)[:, :10], out[:, :10])  # no peeking ahead
    assert not torch.allclose(logits(changed)[:, 10:], out[:, 10:])
    # Parts: embedding on the first stage, norm and head on the last, blocks everywhere.
    names = [set(dict(s.named_parameters())) for s in stages]
    assert "embed.weight" in names[0] and "head.weight" in names[2]
    assert {n for n in names[1] if not n.startswith("blocks.")} == set()


def test_checkfree_plus_swaps_the_first_two_and_last_two_stages() -> None:
    normal = route(6)
    assert [v.stage for v in normal] == [0, 1, 2, 3, 4, 5]
    assert normal[0] == Visit(0, embed=True) and normal[-1] == Visit(5, head=True)
    swapped = route(6, swapped=True)
    assert [(v.stage, v.embed, v.blocks, v.head) for v in swapped] == [
        (0, True, False, False),
        (1, False, True, False),
        (0, False, True, False),
        (2, False, True, False),
        (3, False, True, False),
        (5, False, True, False),
        (4, False, True, False),
        (5, False, False, True),
    ]
    assert routes("checkfree+", 6, 4) == [normal, swapped, normal, swapped]
    assert routes("checkfree", 6, 4) == [normal] * 4


def test_recovery_messages_come_from_the_right_neighbours() -> None:
    def pairs(strategy, failed, stages=6):
        return [(t.src, t.dst, t.kind) for t in recovery_transfers(strategy, stages, failed)]

    assert pairs("checkfree", (2, 4)) == [
        (1, 2, "blocks"),
        (3, 2, "blocks"),
        (3, 4, "blocks"),
        (5, 4, "blocks"),
    ]
    assert pairs("copy", (2,)) == [(1, 2, "blocks")]
    assert pairs("random", (2,)) == [] and pairs("checkpoint", (0, 3)) == []
    assert pairs("checkfree+", (0, 5)) == [
        (1, 0, "blocks"),
        (1, 0, "replica"),
        (4, 5, "blocks"),
        (4, 5, "replica"),
    ]
    assert pairs("redundant", (5,)) == [(0, 5, "replica")]


def test_stage_state_round_trips_and_matches_its_declared_shapes() -> None:
    config = tiny(stages=3)
    corpus = load_corpus(config.corpus_bytes, config.val_fraction)
    tokens, targets = train_batch(corpus, 0, 0, 4, 32)
    a = StageWorker(config, 0, torch.Generator().manual_seed(0))
    x = a.forward("k", True, True, False, tokens)
    a.backward("k", torch.ones_like(x), 1.0)
    a.step(1e-3)
    state = a.state_tensors()
    shapes = state_shapes(config.model, 0)
    assert set(state) == set(shapes)
    assert all(
        tuple(state[k].shape) == shapes[k][0] and state[k].dtype == shapes[k][1] for k in state
    )
    assert float(state["adam/embed.weight/step"]) == 1.0 and a.grad_norm <= config.clip_norm
    b = StageWorker(config, 0, torch.Generator().manual_seed(1))
    b.load_state_tensors(state)
    for k, v in b.state_tensors().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
