"""Diffusion and consistency models that produce trajectories for LCSC to search over.

* :mod:`.edm` -- EDM preconditioning and the :class:`Denoiser` wrapper.
* :mod:`.networks` -- MLP and small U-Net, :class:`ModelConfig`, :func:`build_model`.
* :mod:`.data` -- datasets in model space ``[-1, 1]`` and :func:`to_original_units`.
* :mod:`.samplers` -- Euler, Heun, DPM-Solver++(2M) and consistency sampling from fixed noise.
* :mod:`.losses` -- EDM, iCT and CD objectives.
* :mod:`.training` -- :func:`train`: training loops recording the trajectory, EMA and final model.
* :mod:`.io` -- model files whose ``lcsc_metadata`` rebuilds the network.
* :mod:`.generator` -- :class:`FixedNoiseGenerator`: a trained model sampling fixed noise.
* :mod:`.schedules` -- faster DM training: noise-level curriculum, momentum decay.
"""

from lcsc.reference.generative.data import (
    Dataset,
    DataSpec,
    load_dataset,
    load_from_spec,
    to_original_units,
)
from lcsc.reference.generative.edm import Denoiser, Preconditioning
from lcsc.reference.generative.generator import FixedNoiseGenerator, run_metadata
from lcsc.reference.generative.io import (
    LoadedModel,
    configs_from_metadata,
    load_model,
    load_state,
    make_metadata,
    model_from_metadata,
    save_model,
)
from lcsc.reference.generative.networks import ModelConfig, build_model
from lcsc.reference.generative.samplers import SigmaSchedule, initial_noise, sample, steps_for
from lcsc.reference.generative.training import TrainConfig, TrainResult, train

__all__ = [
    "DataSpec",
    "Dataset",
    "Denoiser",
    "FixedNoiseGenerator",
    "LoadedModel",
    "ModelConfig",
    "Preconditioning",
    "SigmaSchedule",
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
    "run_metadata",
    "sample",
    "save_model",
    "steps_for",
    "to_original_units",
    "train",
]
