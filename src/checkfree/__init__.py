"""CheckFree / CheckFree+: recover a lost pipeline stage from its neighbours, no checkpoints.

A small LLaMA-style language model is trained pipeline-parallel (one stage per process on
torch.distributed, or all stages in one process) while stages fail at a modelled hourly rate;
a strategy rebuilds each lost stage: CheckFree, CheckFree+, checkpoint rollback, redundant
computation, or an ablation. See ``docs/checkfree.md``.

    from checkfree import TrainConfig, ModelConfig, FailureConfig, train
    result = train(TrainConfig(strategy="checkfree+", failures=FailureConfig(rate_percent=16)))
    result.val_curve, result.failures, result.time_to_loss(2.0)
"""

from checkfree.config import STRATEGIES, FailureConfig, ModelConfig, TrainConfig
from checkfree.distributed import ProcessInfo
from checkfree.failures import FailureSchedule, failure_probability
from checkfree.plan import Plan, Slot, build_plan, check_recoverable
from checkfree.recovery import checkfree_weight, weighted_average
from checkfree.train import RunResult, train

__all__ = [
    "STRATEGIES",
    "FailureConfig",
    "FailureSchedule",
    "ModelConfig",
    "Plan",
    "ProcessInfo",
    "RunResult",
    "Slot",
    "TrainConfig",
    "build_plan",
    "check_recoverable",
    "checkfree_weight",
    "failure_probability",
    "train",
    "weighted_average",
]
