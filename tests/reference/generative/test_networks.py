from __future__ import annotations

import json

import pytest
import torch

from lcsc.errors import LcscError
from lcsc.reference.generative import ModelConfig, build_model, model_from_metadata
from lcsc.reference.generative.io import make_metadata
from lcsc.reference.generative.networks import num_parameters


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(data_shape=(64,), width=32, depth=2, emb_dim=16),
        ModelConfig(data_shape=(1, 8, 8), width=32, depth=1, emb_dim=16, embedding="positional"),
        ModelConfig(kind="unet", data_shape=(1, 8, 8), channels=8, emb_dim=16),
        ModelConfig(
            kind="unet",
            data_shape=(3, 16, 16),
            channels=8,
            channel_mult=(1, 2, 2),
            num_res_blocks=2,
            emb_dim=16,
            dropout=0.1,
        ),
    ],
)
def test_shapes_and_gradients(config: ModelConfig) -> None:
    model = build_model(config)
    x = torch.randn(3, *config.data_shape)
    out = model(x, torch.tensor([0.01, 1.0, 50.0]))
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_default_mlp_size() -> None:
    # The default MLP is the ~400K-parameter model of the paper's digits prototype.
    assert 350_000 < num_parameters(build_model(ModelConfig(data_shape=(1, 8, 8)))) < 450_000


def test_config_round_trip_rebuilds_the_same_network() -> None:
    config = ModelConfig(
        kind="unet",
        data_shape=(1, 8, 8),
        channels=8,
        channel_mult=(1, 2),
        emb_dim=16,
        parametrisation="cm",
    )
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    torch.manual_seed(0)
    a = build_model(config)
    b = model_from_metadata(json.loads(json.dumps(make_metadata(config, None))))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(a(x, 3.0), b(x, 3.0))  # the Fourier frequencies are rebuilt identically


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "transformer"}, "kind"),
        ({"width": 0}, "width"),
        ({"depth": 1.5}, "depth"),
        ({"emb_dim": 7}, "emb_dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"parametrisation": "vp"}, "parametrisation"),
        ({"sigma_data": -1.0}, "sigma_data"),
        ({"kind": "unet", "data_shape": (64,)}, "data_shape"),
        ({"kind": "unet", "data_shape": (1, 6, 6), "channel_mult": (1, 2, 2)}, "data_shape"),
    ],
)
def test_bad_config_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(LcscError, match=field):
        ModelConfig(**changes)


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(LcscError, match="unknown field.*colour"):
        ModelConfig.from_dict({**ModelConfig().to_dict(), "colour": "red"})
