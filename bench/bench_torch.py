"""ftjax against eager PyTorch on the CPU, side by side in one process: train-step time, and per-layer Hessian traces.

Train step (`--workloads`): ftjax times the jitted step `python -m experiments.finetune` trains with
(`ftjax.train.steps.CompiledSteps`, from `build_experiment` of experiments/configs/default.py or vit.py with the
overrides in WORKLOADS, method 'none', the digits images resized to the workload's size); PyTorch times the same
architecture holding the same weights (ResNets: torchvision's layout as restated in
tests/fixtures/make_torchvision_fixture.py, since no torchvision wheel fits a CPU-only torch; ViT: timm's
vit_base_patch16_224, pretrained=False) on the same batch: train mode (BatchNorm on batch statistics), cross-entropy,
`loss.backward()` and the config's optimiser (SGD, Nesterov momentum 0.9; the ViT: AdamW after clipping at global
norm 1). `--dtype bfloat16` sets the config's `model.dtype` (float32 parameters, bfloat16 compute) and runs PyTorch
under `torch.autocast('cpu', torch.bfloat16)`. The batch is placed once; the ftjax step is then called as the train
loop calls it (asynchronously, its state donated), blocking after `--steps` steps.

Traces (`--traces`, float32): per-layer Hutchinson traces (docs/methods.md §4.2) of the eval-mode cross-entropy of
a small conv net (`small_cnn`) and of the default ResNet-18 (width 16, small stem, shipped weights, fresh head) on
one digits batch of 64: `hessian.layer_traces` with one probe per compiled call and with `VMAPPED` vmapped per call,
against PyHessian's estimator written out (pyhessian itself is not a dependency): the gradient taken once with
`create_graph=True`, then per probe v its `hessian_vector_product`, `torch.autograd.grad(grads, params,
grad_outputs=v, retain_graph=True)`, each layer's sample v_l . (Hv)_l. Both frameworks use the same weights, batch and
Rademacher probes (those ftjax draws), so their per-layer estimates agree to float32 rounding. A gradient and one HVP
are timed too: ftjax's HVP is forward-over-reverse; PyTorch's includes the forward pass and gradient graph it needs.

Every variant runs once first (ftjax's first call traces and compiles: less one step, it is reported as the compile
time), then `--rounds` rounds run each in turn (ftjax, then PyTorch), so drifting machine load hits both alike;
tables report medians over rounds.

  python bench/bench_torch.py [--workloads resnet18_small,resnet18_112,resnet50_224,vit_b16_224]
      [--dtype float32|bfloat16] [--rounds 5] [--steps 3] [--traces] [--probes 20]
  python bench/bench_torch.py --workloads= --traces     (traces only)

torch and timm are bench-only dependencies (the package and the default tests need neither):
pip install -e '.[parity]'.
"""

import argparse
import importlib.metadata
import os
import pathlib
import statistics
import sys
import time
from typing import Callable, NamedTuple

import flax
import jax
import jax.flatten_util
import jax.numpy as jnp
import ml_collections
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # experiments/ and tests/ sit beside ftjax/

try:
  import torch
  from torch import nn
  from torch.nn import functional as F
except ImportError:
  sys.exit("error: bench/bench_torch.py compares against PyTorch; install it with pip install -e '.[parity]'")

from experiments.configs import default, vit  # noqa: E402
from ftjax import data, hessian, parallel, tree_paths  # noqa: E402
from ftjax.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from ftjax.models import torchvision_import, vit_import  # noqa: E402
from ftjax.train import experiment, steps  # noqa: E402
from tests.fixtures import make_torchvision_fixture as torchvision_layout  # noqa: E402
from tests.fixtures.make_vit_fixtures import import_timm  # noqa: E402

VMAPPED = 10  # probes per compiled call in the vmapped ftjax trace variant
_IMAGENET_INPUT = {"data.channels": 3, "data.mean": IMAGENET_MEAN, "data.std": IMAGENET_STD}
# Only one batch is used: the larger workloads keep few examples so that the resized copies of digits stay small.
_FEW_EXAMPLES = {"data.examples_per_class": 4, "data.test_fraction": 0.05}
WORKLOADS: dict[str, tuple[Callable[[], ml_collections.ConfigDict], dict]] = {
  "resnet18_small": (default.get_config, {}),  # the default run: width 16, small stem, 28x28x1, batch 64
  "resnet18_112": (
    default.get_config,
    {
      "model.width": 64,
      "model.stem": "imagenet",
      "model.pretrained": "none",
      "data.image_size": 112,
      "optim.batch_size": 32,
      **_IMAGENET_INPUT,
      **_FEW_EXAMPLES,
    },
  ),
  "resnet50_224": (
    default.get_config,
    {
      "model.name": "resnet50",
      "model.width": 64,
      "model.stem": "imagenet",
      "model.pretrained": "none",
      "data.image_size": 224,
      "optim.batch_size": 8,
      **_IMAGENET_INPUT,
      **_FEW_EXAMPLES,
    },
  ),
  "vit_b16_224": (vit.get_config, {"data.name": "digits", "optim.batch_size": 8, **_FEW_EXAMPLES}),  # vit_b16, AdamW
}
TRACE_CONFIGS = {
  "small_cnn": {"model.name": "small_cnn", "model.pretrained": "none"},
  "resnet18 (default)": {},
}
_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def with_overrides(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
  """`config` with each 'section.field' of `overrides` set."""
  for path, value in overrides.items():
    section, field = path.split(".")
    config[section][field] = value
  return config


def workload_config(name: str, dtype: str) -> ml_collections.ConfigDict:
  make, overrides = WORKLOADS[name]
  return with_overrides(make(), {**overrides, "model.dtype": dtype})


# --- PyTorch models holding ftjax's weights ---------------------------------------------------------------------


class SmallStemResNet(torchvision_layout.ResNet):
  """The torchvision-layout ResNet with ftjax's 'small' stem: a 3x3/1 conv on `channels` inputs, BN, ReLU, no
  max-pool."""

  def __init__(self, block, layers, num_classes: int, width: int, channels: int):
    super().__init__(block, layers, num_classes, width)
    self.conv1 = nn.Conv2d(channels, width, 3, 1, 1, bias=False)

  def forward(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class TorchSmallCNN(nn.Module):
  """ftjax's SmallCNN (ftjax/models/small_cnn.py) restated, its module names ftjax's."""

  def __init__(self, num_classes: int, channels: int, width: int):
    super().__init__()
    self.conv1 = nn.Conv2d(channels, width, 3, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(2 * width)
    self.dense = nn.Linear(2 * width, 4 * width)
    self.head = nn.Linear(4 * width, num_classes)

  def forward(self, x):
    for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2)):
      x = F.max_pool2d(F.relu(bn(conv(x))), 2)
    return self.head(F.relu(self.dense(x.mean((2, 3)))))


def small_cnn_key(name: str) -> str:
  """PyTorch's key for a SmallCNN leaf, e.g. 'bn1/mean' -> 'bn1.running_mean'."""
  module, leaf = name.rsplit("/", 1)
  return f"{module.replace('/', '.')}.{_LEAF_NAMES[leaf]}"


def torch_layout(array) -> torch.Tensor:
  """A Flax-layout array in PyTorch's: conv (kh, kw, in, out) -> (out, in, kh, kw); dense (in, out) -> (out, in)."""
  array = np.asarray(array, np.float32)
  axes = {4: (3, 2, 0, 1), 2: (1, 0)}.get(array.ndim)
  return torch.from_numpy(np.array(array.transpose(axes) if axes else array, order="C"))


def load_flax_variables(model: nn.Module, variables: dict, torch_key: Callable[[str], str]) -> nn.Module:
  """`model` holding the Flax `variables` ({'params', 'batch_stats'}), `torch_key` naming each leaf's tensor; every
  parameter and statistic must be matched."""
  state = {
    torch_key(name.partition("/")[2]): torch_layout(leaf) for name, leaf in tree_paths.named_leaves(variables).items()
  }
  result = model.load_state_dict(state, strict=False)
  missing = [key for key in result.missing_keys if not key.endswith("num_batches_tracked")]
  if missing or result.unexpected_keys:
    raise ValueError(f"weights do not fit the PyTorch model: missing {missing}, unexpected {result.unexpected_keys}")
  return model


def torch_model(exp: experiment.Experiment) -> tuple[nn.Module, Callable[[str], str] | None]:
  """(The PyTorch twin of `exp.model`, the key of its tensor for an ftjax leaf name; None for the ViT, whose timm
  weights are copied into ftjax instead)."""
  model_config, num_classes, channels = exp.config.model, exp.num_classes, exp.config.data.channels
  if model_config.name == "small_cnn":
    return TorchSmallCNN(num_classes, channels, model_config.width), small_cnn_key
  if model_config.name.startswith("vit"):
    return import_timm().create_model("vit_base_patch16_224", pretrained=False, num_classes=num_classes), None
  layers, bottleneck = torchvision_layout.LAYERS[model_config.name]
  block = torchvision_layout.Bottleneck if bottleneck else torchvision_layout.BasicBlock
  if model_config.stem == "small":
    return SmallStemResNet(block, layers, num_classes, model_config.width, channels), torchvision_import.torch_key
  return torchvision_layout.ResNet(block, layers, num_classes, model_config.width), torchvision_import.torch_key


def timm_params(timm_vit: nn.Module) -> dict:
  """ftjax ViT params (head included) holding the weights of the timm ViT `timm_vit`."""
  state = {key: value.detach().numpy() for key, value in timm_vit.state_dict().items()}
  architecture = vit_import.infer_architecture({key: value.shape for key, value in state.items()}, "timm")
  flat = vit_import.timm_to_params(state, architecture)
  flat.update({"head/kernel": state["head.weight"].T, "head/bias": state["head.bias"]})
  return flax.traverse_util.unflatten_dict({key: jnp.asarray(value) for key, value in flat.items()}, sep="/")


def twin_models(exp: experiment.Experiment) -> tuple[nn.Module, dict, Callable[[str], str] | None]:
  """(The PyTorch model, ftjax's start variables, torch key of an ftjax leaf) holding the same weights."""
  model, torch_key = torch_model(exp)
  variables = {"params": exp.initial_state.params, "batch_stats": exp.initial_state.batch_stats}
  if torch_key is None:
    params = timm_params(model)
    if jax.tree.structure(params) != jax.tree.structure(variables["params"]):
      raise ValueError("timm's vit_base_patch16_224 does not fit ftjax's vit_b16 parameter tree")
    return model, {**variables, "params": params}, None
  return load_flax_variables(model, variables, torch_key), variables, torch_key


def torch_batch(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
  """(images NCHW float32, labels int64) of an ftjax batch."""
  images = torch.from_numpy(np.ascontiguousarray(np.asarray(batch["image"]).transpose(0, 3, 1, 2)))
  return images, torch.from_numpy(np.asarray(batch["label"]).astype(np.int64))


# --- Train steps --------------------------------------------------------------------------------------------------


def first_batch(exp: experiment.Experiment) -> dict:
  """The run's first training batch (epoch 0, step 0)."""
  config = exp.config
  return data.train_batch(
    exp.splits.train,
    exp.train_preprocess,
    seed=config.run.seed,
    epoch=0,
    step=0,
    global_batch_size=config.optim.batch_size,
  )


def ftjax_runner(exp: experiment.Experiment, variables: dict, batch: dict) -> Callable[[int], float]:
  """run(n): n calls of the jitted train step of `exp`, from the state holding `variables`; blocks and returns the
  last step's loss."""
  compiled = experiment.compiled_steps(exp)
  state = parallel.replicate(exp.initial_state.replace(**variables), exp.mesh)
  batch = parallel.shard_batch(batch, exp.mesh)

  def run(n: int) -> float:
    nonlocal state
    for _ in range(n):
      state, metrics = compiled.train(state, batch)
    return float(jax.block_until_ready((state, metrics))[1]["loss"])

  return run


def torch_runner(model: nn.Module, optim: ml_collections.ConfigDict, batch: dict, dtype: str) -> Callable[[int], float]:
  """run(n): n PyTorch train steps of `model` (train mode) with the optimiser of `optim` at its peak learning rate;
  returns the last step's loss."""
  images, labels = torch_batch(batch)
  model.train()
  if optim.name == "adamw":
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.learning_rate, weight_decay=optim.weight_decay)
  elif optim.name == "sgd":
    optimizer = torch.optim.SGD(
      model.parameters(),
      lr=optim.learning_rate,
      momentum=optim.momentum,
      nesterov=optim.nesterov,
      weight_decay=optim.weight_decay,
    )
  else:
    raise ValueError(f"optim.name={optim.name!r}: the bench restates 'sgd' and 'adamw'")

  def run(n: int) -> float:
    for _ in range(n):
      optimizer.zero_grad(set_to_none=True)
      with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
        loss = F.cross_entropy(model(images), labels)
      loss.backward()
      if optim.grad_clip_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip_norm)
      optimizer.step()
    return loss.item()

  return run


def seconds(run: Callable[[], object]) -> float:
  start = time.perf_counter()
  run()
  return time.perf_counter() - start


def interleaved(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
  """{name: median seconds of run()} over `rounds` rounds, each running every run in turn."""
  times = {name: [] for name in runs}
  for _ in range(rounds):
    for name, run in runs.items():
      times[name].append(seconds(run))
  return {name: statistics.median(t) for name, t in times.items()}


class StepTimes(NamedTuple):
  workload: str
  dtype: str
  ftjax_ms: float
  torch_ms: float
  first_call_s: float


def time_train_steps(name: str, dtype: str, rounds: int, num_steps: int) -> StepTimes:
  """Median ms per train step of ftjax and PyTorch on workload `name`, interleaved over `rounds` rounds."""
  exp = experiment.build_experiment(workload_config(name, dtype))
  model, variables, _ = twin_models(exp)
  batch = first_batch(exp)
  run_ftjax = ftjax_runner(exp, variables, batch)
  run_torch = torch_runner(model, exp.config.optim, batch, dtype)
  losses = {}
  first_call = seconds(lambda: losses.update(ftjax=run_ftjax(1)))
  losses["torch"] = run_torch(1)
  print(
    f"{name} ({dtype}): ftjax's first call (trace, compile, one step) {first_call:.1f} s; step-0 loss ftjax "
    f"{losses['ftjax']:.5f}, PyTorch {losses['torch']:.5f}",
    flush=True,
  )
  run_ftjax(1), run_torch(1)
  median = interleaved({"ftjax": lambda: run_ftjax(num_steps), "torch": lambda: run_torch(num_steps)}, rounds)
  return StepTimes(name, dtype, median["ftjax"] / num_steps * 1e3, median["torch"] / num_steps * 1e3, first_call)


# --- Per-layer Hessian traces -------------------------------------------------------------------------------------


def eval_loss(exp: experiment.Experiment, batch_stats: dict, batch: dict) -> jax.tree_util.Partial:
  """The eval-mode mean cross-entropy of `batch` as a function of the params (a Partial over the batch)."""

  def loss(params, batch_stats, batch):
    return steps.eval_losses(exp.model, params, batch_stats, batch)[1].mean()

  return jax.tree_util.Partial(loss, batch_stats=batch_stats, batch=batch)


def ftjax_probes(params, key: jax.Array, num_probes: int) -> jax.Array:
  """[num_probes, d]: the Rademacher probes `hessian.layer_traces(..., key, num_probes)` draws one per call (call i
  draws from fold_in(key, i)) over the flat params in tree order."""
  size = sum(leaf.size for leaf in jax.tree.leaves(params))
  return jnp.concatenate(
    [jax.random.rademacher(jax.random.fold_in(key, i), (1, size), jnp.float32) for i in range(num_probes)]
  )


def torch_probes(params, flat_probes: jax.Array, torch_key, names: list[str]) -> list[list[torch.Tensor]]:
  """Each flat ftjax probe as PyTorch tensors in the order of the parameter `names`."""
  unravel = jax.flatten_util.ravel_pytree(params)[1]
  out = []
  for probe in np.asarray(flat_probes):
    tensors = {torch_key(name): torch_layout(leaf) for name, leaf in tree_paths.named_leaves(unravel(probe)).items()}
    out.append([tensors[name] for name in names])
  return out


def pyhessian_layer_samples(
  model: nn.Module, images: torch.Tensor, labels: torch.Tensor, probes: list[list[torch.Tensor]], layers: list[int]
) -> np.ndarray:
  """[probes, layers]: v_l . (H v)_l of the eval-mode cross-entropy for each probe v and each parameter index in
  `layers`, H v by PyHessian's `hessian_vector_product` on a gradient graph taken once."""
  params = list(model.parameters())
  loss = F.cross_entropy(model(images), labels)
  grads = torch.autograd.grad(loss, params, create_graph=True)
  samples = []
  for v in probes:
    hv = torch.autograd.grad(grads, params, grad_outputs=v, only_inputs=True, retain_graph=True)
    samples.append(torch.stack([torch.sum(hv[i] * v[i]) for i in layers]))
  return torch.stack(samples).detach().numpy()


def time_traces(name: str, overrides: dict, rounds: int, num_probes: int) -> None:
  """Prints the per-layer trace times of ftjax (one probe per call, and vmapped) and of PyHessian's estimator, the
  gradient and one HVP of each, and how far the two frameworks' estimates on the same probes lie apart."""
  exp = experiment.build_experiment(with_overrides(default.get_config(), overrides))
  model, variables, torch_key = twin_models(exp)
  model.eval()
  batch = first_batch(exp)
  params, loss_fn = variables["params"], eval_loss(exp, variables["batch_stats"], batch)
  images, labels = torch_batch(batch)
  names = [name for name, _ in model.named_parameters()]
  layer_names = list(hessian.layer_blocks(params))
  layers = [names.index(torch_key(layer)) for layer in layer_names]
  key, vmapped = jax.random.key(0), min(VMAPPED, num_probes)
  probes = torch_probes(params, ftjax_probes(params, key, num_probes), torch_key, names)
  grad, hvp = jax.jit(lambda f, p: jax.grad(f)(p)), jax.jit(hessian.hvp)
  estimates = {}

  def ftjax_traces():
    traces = hessian.layer_traces(loss_fn, params, key, num_probes)
    estimates["ftjax"] = np.array([traces[layer].estimate for layer in layer_names])

  def torch_traces():
    estimates["torch"] = pyhessian_layer_samples(model, images, labels, probes, layers).mean(axis=0)

  def torch_gradient():
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()

  traces_runs = {
    "ftjax layer_traces, 1 probe per call": ftjax_traces,
    f"ftjax layer_traces, {vmapped} vmapped": lambda: hessian.layer_traces(
      loss_fn, params, key, num_probes, probes_per_batch=vmapped
    ),
    "PyTorch, PyHessian HVPs": torch_traces,
  }
  unit_runs = {
    "ftjax gradient": lambda: jax.block_until_ready(grad(loss_fn, params)),
    "ftjax HVP": lambda: jax.block_until_ready(hvp(loss_fn, params, params)),
    "PyTorch gradient": torch_gradient,
    "PyTorch HVP": lambda: pyhessian_layer_samples(model, images, labels, probes[:1], layers),
  }
  runs = {**traces_runs, **unit_runs}
  for run in runs.values():
    run()
  median = {name: ms * 1e3 for name, ms in interleaved(runs, rounds).items()}

  print(f"\n{name}: {len(layer_names)} layers, {num_probes} probes, batch {len(labels)}, {rounds} rounds, median")
  print("| variant | ms per trace | ms per probe | / PyTorch |\n|---|---:|---:|---:|")
  for variant in traces_runs:
    ms = median[variant]
    print(f"| {variant} | {ms:.0f} | {ms / num_probes:.1f} | {ms / median['PyTorch, PyHessian HVPs']:.2f} |")
  print(
    f"gradient: ftjax {median['ftjax gradient']:.1f} ms, PyTorch {median['PyTorch gradient']:.1f} ms; one HVP: "
    f"ftjax {median['ftjax HVP']:.1f} ms ({median['ftjax HVP'] / median['ftjax gradient']:.2f}x its gradient), "
    f"PyTorch {median['PyTorch HVP']:.1f} ms with the gradient graph it needs "
    f"({median['PyTorch HVP'] / median['PyTorch gradient']:.2f}x its gradient)"
  )
  difference = np.max(np.abs(estimates["torch"] - estimates["ftjax"]) / np.abs(estimates["ftjax"]))
  print(
    f"same weights, batch and probes: largest relative difference of a layer's trace, ftjax vs PyTorch {difference:.1e}"
  )


# --- Main ---------------------------------------------------------------------------------------------------------


def machine_line() -> str:
  return (
    f"jax {jax.__version__}, jaxlib {importlib.metadata.version('jaxlib')}, torch {torch.__version__} "
    f"({torch.get_num_threads()} threads), {len(os.sched_getaffinity(0))} cores available of {os.cpu_count()}, "
    f"{jax.devices()[0].device_kind}; load average {os.getloadavg()[0]:.2f} (other processes' load slows "
    "PyTorch's OpenMP threads far more than XLA's: compare on a quiet machine)"
  )


def main(workloads: list[str], dtype: str, rounds: int, num_steps: int, traces: bool, num_probes: int) -> None:
  print(machine_line(), flush=True)
  results = [time_train_steps(name, dtype, rounds, num_steps) for name in workloads]
  if results:
    print(f"\ntrain step, {num_steps} steps per round, {rounds} rounds, median")
    print("| workload | dtype | ftjax ms/step | PyTorch ms/step | ftjax / PyTorch | ftjax compile s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
      ratio, compile_s = r.ftjax_ms / r.torch_ms, r.first_call_s - r.ftjax_ms / 1e3
      print(f"| {r.workload} | {r.dtype} | {r.ftjax_ms:.0f} | {r.torch_ms:.0f} | {ratio:.2f} | {compile_s:.1f} |")
    print("(ftjax compile: its first call, which traces and compiles the step and runs it once, less one step)")
  if traces:
    for name, overrides in TRACE_CONFIGS.items():
      time_traces(name, overrides, rounds, num_probes)
  print(f"load average at the end: {os.getloadavg()[0]:.2f}")


def parse_workloads(text: str) -> list[str]:
  names = [name for name in text.split(",") if name]
  unknown = [name for name in names if name not in WORKLOADS]
  if unknown:
    raise argparse.ArgumentTypeError(f"unknown workload {unknown[0]!r}; valid: {', '.join(WORKLOADS)}")
  return names


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workloads", type=parse_workloads, default=list(WORKLOADS), help="comma list; '' = none")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=3, help="train steps timed per round")
  parser.add_argument("--traces", action="store_true", help="also time per-layer Hessian traces")
  parser.add_argument("--probes", type=int, default=20, help="Rademacher probes per trace")
  args = parser.parse_args()
  main(args.workloads, args.dtype, args.rounds, args.steps, args.traces, args.probes)
