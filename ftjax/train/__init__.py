"""Training: the train state, pure steps, what a run builds from its config, checkpoints of train
states, and the train-and-evaluate loop (`train_and_evaluate`)."""

from ftjax.train import checkpointing, experiment, interruptions, loop, state, steps
from ftjax.train.experiment import Experiment, RunSetup, build_experiment, build_run_setup, checked_config
from ftjax.train.loop import restore_trained_model, restore_trained_state, train_and_evaluate
from ftjax.train.state import TrainState, create_train_state
from ftjax.train.steps import CompiledSteps, eval_step, train_step

__all__ = [
  "CompiledSteps",
  "Experiment",
  "RunSetup",
  "TrainState",
  "build_experiment",
  "build_run_setup",
  "checked_config",
  "checkpointing",
  "create_train_state",
  "eval_step",
  "experiment",
  "interruptions",
  "loop",
  "restore_trained_model",
  "restore_trained_state",
  "state",
  "steps",
  "train_and_evaluate",
  "train_step",
]
