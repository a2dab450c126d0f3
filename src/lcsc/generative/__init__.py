"""Diffusion and consistency models that produce trajectories for LCSC to search over.

* :mod:`.edm` -- EDM preconditioning and the :class:`Denoiser` wrapper.
* :mod:`.networks` -- MLP and small U-Net, :class:`ModelConfig`, :func:`build_model`.
* :mod:`.data` -- datasets in model space ``[-1, 1]`` and :func:`to_original_units`.
* :mod:`.samplers` -- Euler, Heun, DPM-Solver++(2M) and consistency sampling from fixed noise.
* :mod:`.losses` -- EDM, iCT and CD objectives.
* :mod:`.training` -- :func:`train`: training loops recording the trajectory, EMA and final model.
* :mod:`.io` -- model files whose ``lcsc_metadata`` rebuilds the network.
"""

from lcsc.generative.data import Dataset, DataSpec, load_dataset, load_from_spec, to_original_units
from lcsc.generative.edm import Denoiser, Preconditioning
from lcsc.generative.io import (
    LoadedModel,
    configs_from_metadata,
    load_model,
    load_state,
    make_metadata,
    model_from_metadata,
    save_model,
)
from lcsc.generative.networks import ModelConfig, build_model
from lcsc.generative.samplers import Schedule, initial_noise, sample, steps_for
from lcsc.generative.training import TrainConfig, TrainResult, train

__all__ = [
    "DataSpec",
    "Dataset",
    "Denoiser",
    "LoadedModel",
    "ModelConfig",
    "Preconditioning",
    "Schedule",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "configs_from_metadata",
    "initial_noise",
    "load_dataset",
    "load_from_spec",
    "load_model",
    "load_state",
    "make_metadata",
    "model_from_metadata",
    "sample",
    "save_model",
    "steps_for",
    "to_original_units",
    "train",
]
