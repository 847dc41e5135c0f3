"""Every field of a fine-tuning config, declared once: its default, its check and what it means.

A config is one sub-dict per concern (`config.data`, `config.model`, `config.optim`, `config.noise`,
`config.run`), the method's name (`config.method`) and one sub-dict per method (`config.reg`,
`config.regsl`, ...); a sweep config adds `config.sweep`. Each section below is one sub-dict (the
method's name is the one top-level field), in the order a reader needs them.
"""

from typing import Any, NamedTuple

import ml_collections

from ftjax import data, label_noise, optim
from ftjax.config_validation import BOOLEAN, STRING, FieldCheck, integer, member_of, number, numbers, one_of, pairs
from ftjax.distance import anchors, projection, radii
from ftjax.methods import delta, registry as method_registry
from ftjax.models import registry as model_registry, resnet, vit


class Field(NamedTuple):
  """`name`: dotted path in the config ('noise.rate'); `default`: REQUIRED where a config that has
  the field's section must set it; `check`: None where a later loader checks the value; `help`:
  what the field means, one line."""

  name: str
  default: Any
  check: FieldCheck | None
  help: str


class Required:
  """The default of a field that a config holding its section must set."""

  def __repr__(self) -> str:
    return "required"


REQUIRED = Required()
SELECTION_METRICS = ("validation_accuracy", "validation_loss")
MAX_IMAGE_SIZE = 4096  # pixels per side; a larger image would not fit a device's memory at any batch size


class Section(NamedTuple):
  """Fields that belong together; `optional` sections (the sweep's) are not in the default config."""

  title: str
  about: str
  fields: tuple[Field, ...]
  optional: bool = False


DATASET = FieldCheck(
  data.is_dataset_name,
  f"{', '.join(data.DATASETS)} or 'tfds:NAME'",  # the live registry
  problem="is not a known dataset",
)


def strings(count: tuple[int, ...]) -> FieldCheck:
  """A tuple of non-empty strings, as many as one of `count`."""
  return FieldCheck(
    lambda v: isinstance(v, (tuple, list)) and len(v) in count and all(isinstance(s, str) and s for s in v),
    f"a tuple of {' or '.join(map(str, count))} non-empty strings",
  )


_GROUP_PAIRS = pairs(str, float)
GROUP_VALUES = FieldCheck(
  lambda v: _GROUP_PAIRS.is_valid(v) and all(value >= 0 for _, value in v),
  "a tuple of (str, float) pairs with values >= 0",
)

SECTIONS = (
  Section(
    "data",
    "what is trained on and its input format (ftjax.data)",
    (
      Field("data.name", "digits", DATASET, "the target dataset"),
      Field("data.dir", "", STRING, "where the dataset lies; '' = its default location"),
      Field("data.num_classes", 0, integer(0), "0 = the dataset's class count; otherwise must equal it"),
      Field(
        "data.test_fraction",
        0.2,
        number(0.0, 1.0, low_open=True, high_open=True),
        "held-out split for datasets without a test split",
      ),
      Field("data.examples_per_class", 0, integer(0), "0 = every training example; k = a seeded k-per-class subset"),
      Field(
        "data.validation_fraction",
        0.0,
        number(0.0, 1.0, high_open=True),
        "held out of the training split per class (fixed seed) for validation and model selection; 0 = none (or "
        "the dataset's own: data.splits)",
      ),
      Field(
        "data.clean_validation",
        False,
        BOOLEAN,
        "validation labels without the synthetic noise (analysis only; a practitioner's are noisy; a dataset's own "
        "validation split is corrupted as the training labels are)",
      ),
      Field(
        "data.labels_file",
        "",
        STRING,
        "training labels from a .npy/.json/.csv file (ftjax.data.labels_file) replacing the dataset's; '' = none",
      ),
      Field(
        "data.splits",
        ("train", "test"),
        strings((2, 3)),
        "(train, test[, validation]) splits: 'text_files' file stems in data.dir (GLUE: ('train', 'dev')), tfds "
        "split names, 'image_folder' sub-folders; a third is the dataset's own validation split",
      ),
      Field(
        "data.label_column",
        "label",
        STRING,
        "the label column of 'text_files' (the label feature of a tfds dataset)",
      ),
      Field(
        "data.text_columns",
        ("sentence",),
        strings((1, 2)),
        "the text column(s) of 'text_files': one, or two for sentence pairs",
      ),
      Field(
        "data.tokenizer",
        "",
        STRING,
        "text: a tokenizer.json or a Hugging Face model directory holding one; '' = images, or for a text model "
        "the pretrained source's tokenizer",
      ),
      Field(
        "data.max_length",
        128,
        integer(1),
        "text: tokens per example, special tokens included (longer ones truncated); at most the model's positions",
      ),
      Field("data.token_cache", "", STRING, "text: folder keeping tokenised datasets between runs; '' = none"),
      Field(
        "data.image_size", 28, integer(1, MAX_IMAGE_SIZE), "side of the square input images, in pixels (text: ignored)"
      ),
      Field("data.channels", 1, one_of((1, 3)), "input channels (1 grey, 3 RGB; text: ignored)"),
      Field(
        "data.mean", (0.5,), numbers(0.0), "per-channel mean subtracted from inputs (one per channel; text: ignored)"
      ),
      Field(
        "data.std",
        (0.5,),
        numbers(0.0, low_open=True),
        "per-channel std inputs are divided by (one per channel; text: ignored)",
      ),
      Field(
        "data.crop_padding",
        2,
        integer(0, MAX_IMAGE_SIZE),
        "random-crop augmentation: pixels of padding (below image_size); 0 = no crops (text: ignored)",
      ),
      Field("data.flip", False, BOOLEAN, "random horizontal flips of training images (text: ignored)"),
      Field(
        "data.workers",
        0,
        integer(0, 256),
        "worker processes making batches ahead (decoding, augmenting); 0 = one thread of the training process; "
        "changes no value",
      ),
    ),
  ),
  Section(
    "noise",
    "synthetic label noise on the training split; the test split stays clean (ftjax.label_noise)",
    (
      Field("noise.type", "none", one_of(label_noise.NOISE_TYPES), "how training labels are corrupted"),
      Field("noise.rate", 0.0, number(0.0, 1.0, high_open=True), "η: probability that a label is flipped"),
      Field("noise.seed", 0, integer(0), "seed of the flips"),
      Field(
        "noise.symmetric_mode",
        "other",
        one_of(label_noise.SYMMETRIC_MODES),
        "a symmetric flip goes to another class ('other') or any class ('any')",
      ),
      Field("noise.matrix", (), None, "for 'matrix': C rows of the row-stochastic F[true, noisy]"),
    ),
  ),
  Section(
    "model",
    "the network and its source weights (ftjax.models)",
    (
      Field(
        "model.name",
        "resnet18",
        member_of(model_registry.MODELS, ("auto",)),
        "architecture; 'auto' = name, width, stem, pooling, vocab_size, data's image_size, channels, mean, std from "
        "`pretrained`",
      ),
      Field("model.width", 16, integer(1), "ResNets: channels of the first stage (torchvision's: 64)"),
      Field(
        "model.stem",
        "small",
        one_of(resnet.STEMS),
        "ResNets' first layer: 'imagenet' 7x7/2 conv + max-pool, 'small' 3x3/1",
      ),
      Field(
        "model.pooling",
        "cls",
        one_of(vit.POOLINGS),
        "ViTs: the head reads the class token's output ('cls') or the mean of all tokens ('gap')",
      ),
      Field(
        "model.dropout_rate",
        0.0,
        number(0.0, 1.0, high_open=True),
        "ViTs: dropout after attention, MLP, embedding; text encoders: hidden, attention and classifier dropout",
      ),
      Field(
        "model.vocab_size",
        0,
        integer(0),
        "text encoders: rows of the word embedding (the tokenizer's vocabulary); 0 = the architecture's own",
      ),
      Field(
        "model.stochastic_depth_rate",
        0.0,
        number(0.0, 1.0, high_open=True),
        "ViTs: drop-path rate of the last block, rising linearly from 0 at the first",
      ),
      Field(
        "model.dtype",
        "float32",
        one_of(("float32", "bfloat16")),
        "compute dtype of ViTs and ResNets; parameters and optimiser state stay float32",
      ),
      Field(
        "model.pretrained",
        "fashion_mnist_resnet18",
        STRING,
        "source weights: a shipped name, a .msgpack/.safetensors/.pth file, a finished workdir, or 'none'",
      ),
    ),
  ),
  Section(
    "optim",
    "optimiser, batch sizes and learning-rate schedule (ftjax.optim)",
    (
      Field("optim.num_epochs", 20, integer(1), "passes over the training split"),
      Field("optim.batch_size", 64, integer(1), "global batch, over every device of every process"),
      Field("optim.eval_batch_size", 256, integer(1), "global batch of evaluation"),
      Field("optim.name", "sgd", one_of(optim.OPTIMIZERS), "the optimiser"),
      Field("optim.learning_rate", 0.05, number(0.0, low_open=True), "peak learning rate"),
      Field("optim.momentum", 0.9, number(0.0, 1.0, high_open=True), "momentum of 'sgd'; 0 = none"),
      Field("optim.nesterov", True, BOOLEAN, "Nesterov momentum ('sgd')"),
      Field(
        "optim.weight_decay", 0.0, number(0.0), "decoupled for 'adamw', added to the gradient for 'sgd' and 'adam'"
      ),
      Field("optim.lr_schedule", "cosine", one_of(optim.SCHEDULES), "learning rate over the steps after warm-up"),
      Field("optim.lr_decay_epochs", (), numbers(0.0), "for 'step': ×0.1 at each of these epochs (each <= num_epochs)"),
      Field("optim.warmup_epochs", 0.0, number(0.0), "linear warm-up from 0 (below num_epochs)"),
      Field(
        "optim.grad_clip_norm",
        0.0,
        number(0.0),
        "clip the gradient to this global L2 norm before the optimiser; 0 = no clipping",
      ),
    ),
  ),
  Section(
    "method",
    "the fine-tuning method; its settings are the sections below (ftjax.methods)",
    (
      Field(
        "method",
        "none",
        member_of(method_registry.METHODS),
        "'none' = plain fine-tuning; l2, l2sp, penalty, constraint use config.reg, the others their own section",
      ),
    ),
  ),
  Section(
    "reg",
    "distance regularisation: l2, l2sp, penalty, constraint, and the constraint of regsl/consistent",
    (
      Field("reg.norm", "frobenius", one_of(projection.PROJECTION_NORMS), "distance of each layer from its source"),
      Field("reg.radius", 1.0, number(0.0), "D: radius of the first layer group ('constraint')"),
      Field("reg.gamma", 1.0, number(1.0), "γ: growth of radii / penalty weights with depth"),
      Field(
        "reg.schedule",
        "depth",
        one_of(radii.SCHEDULES),
        "'depth': D·γ^(g-1) for group g; 'authors': Li & Zhang 2021's ResNet code",
      ),
      Field("reg.head_radius", 10.0, number(0.0), "D_head: radius of the head ('constraint')"),
      Field(
        "reg.bn_radius",
        0.0,
        number(0.0),
        "D_bn: radius of each BatchNorm layer's effective scale γ/√var per channel; 0 = unconstrained",
      ),
      Field("reg.weight", 0.01, number(0.0), "λ: penalty weight of 'l2', 'l2sp', 'penalty'"),
      Field("reg.head_weight", 0.01, number(0.0), "λ_head: penalty weight of the head"),
      Field(
        "reg.head_anchor",
        "zero",
        one_of(anchors.HEAD_ANCHORS),
        "the head's reference point: 'zero' (authors' code) or its initialisation",
      ),
      Field(
        "reg.mars_mode",
        "rescale",
        one_of(projection.MARS_MODES),
        "MARS projection: 'rescale' (authors' code) or 'exact'",
      ),
      Field(
        "reg.groups",
        (),
        pairs(str, str),
        "((regex, group), ...) over param paths, input to output; () = the model's groups",
      ),
      Field("reg.group_values", (), GROUP_VALUES, "((group, value), ...): radii / weights replacing the schedule's"),
      Field(
        "reg.role_values",
        (),
        GROUP_VALUES,
        "((role, value), ...): radii / weights of the tensors of a role the model declares, replacing their group's",
      ),
    ),
  ),
  Section(
    "regsl",
    "the parts of 'regsl' (Li & Zhang 2021)",
    (
      Field("regsl.constraint", True, BOOLEAN, "the layer-wise constraint of config.reg"),
      Field("regsl.correction", True, BOOLEAN, "self label-correction (config.correction)"),
      Field("regsl.reweighting", True, BOOLEAN, "label reweighting (config.reweighting)"),
    ),
  ),
  Section(
    "correction",
    "self label-correction of 'regsl'",
    (
      Field(
        "correction.threshold",
        0.9,
        number(0.0, 1.0, low_open=True),
        "τ: a label becomes the prediction whose probability exceeds it",
      ),
      Field("correction.start_epoch", 10, integer(0), "first epoch that corrects labels"),
      Field(
        "correction.align_prior",
        False,
        BOOLEAN,
        "read probabilities times (label marginal at the start / label marginal now), so no class is drained",
      ),
    ),
  ),
  Section(
    "reweighting",
    "label reweighting of 'regsl'",
    (
      Field("reweighting.start_epoch", 5, integer(0), "first epoch that reweights examples"),
      Field(
        "reweighting.temperature",
        1.0,
        number(0.0, low_open=True),
        "T_0: initial temperature of the softmax(−loss / T) weights",
      ),
    ),
  ),
  Section(
    "consistent",
    "the forward-corrected consistent loss (Ju, Li & Zhang 2022)",
    (
      Field("consistent.constraint", True, BOOLEAN, "the layer-wise constraint of config.reg"),
      Field(
        "consistent.transition",
        "estimate",
        STRING,
        "noise transition: 'estimate', 'true' (the noise config's F) or a .json/.npy matrix file",
      ),
      Field(
        "consistent.estimator",
        "dual_t",
        one_of(("dual_t", "anchor")),
        "for 'estimate': dual-T, or the anchor-point estimate alone",
      ),
      Field(
        "consistent.anchor_percentile",
        97.0,
        number(0.0, 100.0, low_open=True),
        "percentile of each class's predicted probability that bounds its anchor point",
      ),
      Field(
        "consistent.estimator_workdir",
        "",
        STRING,
        "for 'estimate': workdir of the plain run (this config, method='none') whose predictions estimate "
        "F; '' = WORKDIR/transition_estimator",
      ),
    ),
  ),
  Section(
    "delta",
    "DELTA feature-map regularisation (Li et al. 2019)",
    (
      Field("delta.alpha", 0.01, number(0.0), "α: weight of the channel-weighted feature-map distance"),
      Field("delta.beta", 0.01, number(0.0), "β: weight of ||W_head||²"),
      Field("delta.num_batches", 2, integer(1), "batches of batch_size the channel weights are measured on"),
      Field(
        "delta.normalization",
        "paper",
        one_of(delta.NORMALIZATIONS),
        "'authors' = standardised softmax/5 weights and C/(H·W) scaling of their code",
      ),
    ),
  ),
  Section(
    "bss",
    "batch spectral shrinkage (Chen et al. 2019)",
    (
      Field("bss.eta", 0.001, number(0.0), "η: weight of the sum of squares of the k smallest singular values"),
      Field("bss.k", 1, integer(1), "how many of the smallest singular values are shrunk"),
    ),
  ),
  Section(
    "label_smoothing",
    "label smoothing (Szegedy et al. 2016)",
    (Field("label_smoothing.eps", 0.1, number(0.0, 1.0), "ε: targets (1 − ε)·onehot + ε/C"),),
  ),
  Section(
    "run",
    "the run's seed, checkpoints, logs and evaluation",
    (
      Field("run.seed", 0, integer(0), "seed of initialisation, batches and augmentation"),
      Field("run.checkpoint_every", 200, integer(1), "steps between checkpoints; one is also written at the end"),
      Field("run.log_every", 50, integer(1), "steps between progress lines and metrics records"),
      Field("run.eval_every", 1, integer(0), "epochs between evaluations (validation, test); 0 = only at the end"),
      Field(
        "run.select_by",
        "validation_accuracy",
        one_of(SELECTION_METRICS),
        "with a validation split: the evaluation whose best model is kept as the selected one",
      ),
    ),
  ),
  Section(
    "sweep",
    "a grid of runs of the config above (experiments.sweep; ftjax.runs.sweeps checks it)",
    (
      Field("sweep.variants", REQUIRED, None, "{name: ('field=value', ...)}: the methods compared, as overrides"),
      Field("sweep.order", (), None, "variant names in the order the tables list them; then the rest by name"),
      Field("sweep.only", "", None, "comma-separated names of the variants to run and summarise; '' = all"),
      Field(
        "sweep.tune",
        {},
        None,
        "{variant: ((field, (value, ...)), ...)}: each variant's grid, the setting with the best mean validation "
        "accuracy reported (needs a validation split: data.validation_fraction > 0 or a third data.splits)",
      ),
      Field(
        "sweep.datasets",
        REQUIRED,
        None,
        "dataset names, each as config.data.name, or (label, ('data.name=...', 'data.dir=...')) pairs",
      ),
      Field(
        "sweep.grids",
        (),
        None,
        "sub-grids ({variants, datasets, noise, seeds}, omitted ones the sweep's) whose union is run; () = one grid",
      ),
      Field("sweep.noise", REQUIRED, None, "noise settings: 'none' or 'TYPE:RATE' with TYPE symmetric or pairflip"),
      Field("sweep.seeds", REQUIRED, None, "seeds; each run sets config.run.seed and config.noise.seed to it"),
      Field("sweep.measure", False, None, "measure every finished run's Hessian quantities (experiments.measure)"),
      Field("sweep.measure_seeds", (), None, "seeds whose runs are measured; () = all"),
      Field("sweep.measure_settings", {}, None, "{name: value} replacing experiments.measure's flag defaults"),
    ),
    optional=True,
  ),
)


def fields(sections=SECTIONS) -> tuple[Field, ...]:
  """Every field of `sections`, in order."""
  return tuple(field for section in sections for field in section.fields)


def field_checks(sections=SECTIONS) -> dict[str, FieldCheck]:
  """{dotted name: check} of the checked fields of the sections a run config holds."""
  return {f.name: f.check for s in sections if not s.optional for f in s.fields if f.check is not None}


def default_config() -> ml_collections.ConfigDict:
  """The default run's config: every field of the non-optional sections at its default."""
  tree: dict[str, Any] = {}
  for field in fields(s for s in SECTIONS if not s.optional):
    *parents, leaf = field.name.split(".")
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = field.default
  return ml_collections.ConfigDict(tree)
