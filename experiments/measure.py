"""Hessian-based generalisation measures of finished fine-tuning runs (docs/methods.md §4):
`python -m experiments.measure --workdir DIR [--workdir DIR2 ...] [--num_probes N] [--max_batches B]
[--batch_size S] [--out DIR]`.

Each workdir's latest checkpoint (the state its results.json describes; with --checkpoint=selected the model
selected on validation) is measured on the first B evaluation batches of S training examples, and
DIR/measures.json (measures_selected.json) is written beside per-layer bar plots (layer_traces.png,
layer_distances.png) and the Hessian's eigenvalue density (hessian_density.png). With several workdirs,
bound_vs_gap.png (each run's Hessian bound against its measured generalisation gap) goes to --out or the first workdir.
"""

from absl import flags

from experiments import launch
from ftjax import configs
from ftjax.runs import measure_reports
from ftjax.runs.measure import DEFAULTS, MeasureSettings

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("workdir", None, "Workdir of a finished experiments.finetune run", required=True)
flags.DEFINE_string("out", None, "Where bound_vs_gap.png goes with several workdirs (default: the first).")
flags.DEFINE_integer("num_probes", DEFAULTS.num_probes, "HVPs (probes) for the Hessian traces.")
flags.DEFINE_enum("trace_method", DEFAULTS.trace_method, ["hutchinson", "hutchpp"], "Trace estimator.")
flags.DEFINE_integer("max_batches", DEFAULTS.max_batches, "Evaluation batches of training examples measured.")
flags.DEFINE_integer("batch_size", DEFAULTS.batch_size, "Examples per evaluation batch (global).")
flags.DEFINE_integer("eigen_iterations", DEFAULTS.eigen_iterations, "Most power iterations per top eigenvalue.")
flags.DEFINE_float("eigen_tol", DEFAULTS.eigen_tol, "Relative eigenvalue change that ends the power iteration.")
flags.DEFINE_integer("lanczos_steps", DEFAULTS.lanczos_steps, "Lanczos nodes for v_i^T H_ii^+ v_i.")
flags.DEFINE_float("noise_scale", DEFAULTS.noise_scale, "Noise std per layer as a multiple of rms(W_i).")
flags.DEFINE_integer("noise_draws", DEFAULTS.noise_draws, "Noise draws per layer for the noise stability.")
flags.DEFINE_float("delta", DEFAULTS.delta, "Confidence parameter of the PAC-Bayes bound.")
flags.DEFINE_integer("seed", DEFAULTS.seed, "Seed of the probes, start vectors and noise.")
flags.DEFINE_enum(
  "checkpoint", DEFAULTS.checkpoint, ["final", "selected"], "The final model, or the one selected on validation."
)
flags.DEFINE_integer("density_runs", DEFAULTS.density_runs, "Lanczos runs of the Hessian density (0 = none; try 1).")
flags.DEFINE_integer("density_steps", DEFAULTS.density_steps, "Lanczos steps (HVPs) per density run.")
flags.DEFINE_bool("density_layers", DEFAULTS.density_layers, "Also each layer's Hessian density (a run per layer).")
flags.DEFINE_enum(
  "labels",
  DEFAULTS.labels,
  ["given", "final"],
  "Training labels as given, or those the method changed them to (regsl) when the measured model was trained.",
)
flags.DEFINE_enum(
  "loss",
  DEFAULTS.loss,
  ["cross_entropy", "forward_corrected"],
  "Train loss measured: cross-entropy, or the forward-corrected loss a consistent run trained with.",
)
flags.DEFINE_bool(
  "linearize", DEFAULTS.linearize, "Linearize each batch's gradient once per estimate (faster; holds its values)."
)
flags.DEFINE_integer(
  "concurrency", DEFAULTS.concurrency, "Hessian measures computed at once on one device (1: in turn); same numbers."
)


def main(argv):
  del argv
  for workdir in FLAGS.workdir:
    launch.check_writable_dir("--workdir", workdir, must_exist=True)
  if FLAGS.out is not None:
    launch.check_writable_dir("--out", FLAGS.out)
  for workdir in FLAGS.workdir:
    measure_reports.check_finished(workdir, FLAGS.checkpoint, FLAGS.labels, FLAGS.loss)  # before any progress line
  launch.setup()
  settings = MeasureSettings(**{field: FLAGS[field].value for field in MeasureSettings._fields})
  measure_reports.measure_workdirs(FLAGS.workdir, settings, FLAGS.out, defaults=configs.default_config())


if __name__ == "__main__":
  launch.run(main)
