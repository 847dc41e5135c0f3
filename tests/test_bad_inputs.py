"""Bad input to the four commands: exit code 2, exactly one `error:` line on stderr naming the value,
no traceback, and the workdir untouched (byte-identical tree, or still absent).

The commands run as real processes, batched: one helper process (this file run as a script) imports
the library once and forks a child per case that runs `python -m experiments.X ARGS` as `__main__`."""

import hashlib
import importlib.util
import json
import os
import re
import struct
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = "--config=experiments/configs/sweep_noisy_digits.py"
SWEEP_CELL = "plain/digits/symmetric_0.4/seed0"  # a cell of that sweep
HAS_TORCH = importlib.util.find_spec("torch") is not None
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def run_in_child(target: str, argv: list[str], stderr_path: str) -> int:
  """Forks; the child runs `target` (a module name, or a .py path) as `__main__` with `argv`, its
  stderr going to `stderr_path`. Returns the child's exit code."""
  pid = os.fork()
  if pid == 0:
    import runpy
    import traceback

    code = 99
    try:
      fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
      os.dup2(fd, 2)
      os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
      sys.argv = [target, *argv]
      if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
      else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
      code = 0
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 (reported to the parent as code 99 with its traceback)
      traceback.print_exc()
    finally:
      sys.stderr.flush()
      os._exit(code)
  return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def main_of_runner() -> None:
  """Reads [(target, argv, stderr_path), ...] as JSON from stdin and prints their exit codes as JSON."""
  sys.path[0] = REPO  # run as a script, the path starts at tests/
  import experiments.launch  # noqa: F401 (jax, absl and the library, loaded once for every child)
  import ftjax.runs.measure_reports  # noqa: F401
  import ftjax.runs.stages  # noqa: F401
  import ftjax.runs.sweeps  # noqa: F401

  cases = json.load(sys.stdin)
  print(json.dumps([run_in_child(target, argv, path) for target, argv, path in cases]))


def tree_hash(path: str) -> str | None:
  """sha256 over every file's relative path and bytes under `path` (or of the file itself); None if absent."""
  if not os.path.lexists(path):
    return None
  digest = hashlib.sha256()
  if os.path.isfile(path):
    digest.update(open(path, "rb").read())
    return digest.hexdigest()
  for root, dirs, files in sorted(os.walk(path)):
    dirs.sort()
    for name in sorted(files) + [d + "/" for d in dirs]:
      full = os.path.join(root, name)
      digest.update(os.path.relpath(full, path).encode() + b"\0")
      if os.path.isfile(full):
        digest.update(open(full, "rb").read())
  return digest.hexdigest()


def cases(tmp: str) -> list[tuple[str, list[str], str, str]]:
  """(command, argv, the workdir the case must leave untouched, text its error line must hold).
  WORKDIR is a directory holding an earlier results.json; FILE an existing file."""
  w, file = f"--workdir={tmp}/WORKDIR", f"{tmp}/FILE"
  ft = "experiments.finetune"
  cfg = f"{tmp}/configs"
  rows = [
    (ft, [w, "--config.optim.learning_rate=inf"], "config.optim.learning_rate=inf is invalid"),
    (ft, [w, "--config.optim.learning_rate=nan"], "config.optim.learning_rate=nan is invalid"),
    (ft, [w, "--config.optim.weight_decay=inf"], "config.optim.weight_decay=inf is invalid"),
    (ft, [w, "--config.reg.weight=inf"], "config.reg.weight=inf is invalid"),
    (ft, [w, "--config.reg.head_weight=nan"], "config.reg.head_weight=nan is invalid"),
    (ft, [w, "--config.reg.radius=inf"], "config.reg.radius=inf is invalid"),
    (ft, [w, "--config.reweighting.temperature=inf"], "config.reweighting.temperature=inf is invalid"),
    (ft, [w, "--config.delta.alpha=inf"], "config.delta.alpha=inf is invalid"),
    (ft, [w, "--config.bss.eta=nan"], "config.bss.eta=nan is invalid"),
    (ft, [w, "--config.optim.warmup_epochs=inf"], "config.optim.warmup_epochs=inf is invalid"),
    (ft, [w, "--config.data.std=(1e999,)"], "config.data.std=(inf,) is invalid"),
    (ft, [w, "--config.reg.group_values=(('stage1', 1e999),)"], "config.reg.group_values=(('stage1', inf),)"),
    (ft, [w, "--config.run.seed=99999999999999999999"], "config.run.seed=99999999999999999999 is invalid"),
    (ft, [w, "--config.noise.seed=-1"], "config.noise.seed=-1 is invalid"),
    (ft, [w, "--config.data.image_size=1000000"], "config.data.image_size=1000000 is invalid"),
    (ft, [w, "--config.data.crop_padding=28"], "config.data.crop_padding=28 is invalid"),
    (ft, [w, "--config.optim.lr_decay_epochs=(1e9,)"], "config.optim.lr_decay_epochs=(1000000000.0,)"),
    (ft, [w, "--config.reg.groups=(('stage1/[', 'g'),)"], "'stage1/['"),
    (ft, [w, "--config.optim.num_epochs=0"], "config.optim.num_epochs=0 is invalid"),
    (ft, [w, "--config.optim.momentum=1.0"], "config.optim.momentum=1.0 is invalid"),
    (ft, [w, "--config.model.name=resnet7"], "config.model.name='resnet7' is invalid"),
    (ft, [w, "--config.data.name=cifar7"], "config.data.name='cifar7'"),
    (ft, [w, "--config.optim.warmup_epochs=50.0"], "config.optim.warmup_epochs=50.0"),
    (ft, [w, "--config.no_such_field=1"], "no_such_field"),
    (ft, [w, "--no_such_flag"], "no_such_flag"),
    (ft, [w, "--config=experiments/configs/missing.py"], "missing.py"),
    (ft, [w, f"--config={cfg}/syntax.py"], f"--config={cfg}/syntax.py: syntax error at line 1"),
    (ft, [w, f"--config={cfg}/no_get_config.py"], f"--config={cfg}/no_get_config.py defines no get_config"),
    (ft, [w, f"--config={cfg}/raises.py"], f"--config={cfg}/raises.py: get_config raised RuntimeError: boom"),
    (ft, ["--workdir="], "--workdir='' is empty"),
    (ft, [f"--workdir={file}"], f"--workdir={file!r} is an existing file"),
    (ft, [f"--workdir={file}/run"], "which is a file"),
    (ft, ["--workdir=/proc/ftjax-bad-input"], "--workdir='/proc/ftjax-bad-input' cannot be written"),
    ("experiments.pretrain", [w, f"--export={tmp}/no/such/dir/model.msgpack"], "does not exist"),
    ("experiments.pretrain", [w, f"--export={tmp}/model.txt"], "must end in .msgpack"),
    ("experiments.pretrain", [w, "--config.optim.learning_rate=inf"], "config.optim.learning_rate=inf is invalid"),
    ("experiments.pretrain", [f"--workdir={file}"], "is an existing file"),
    ("experiments.sweep", [w, SWEEP, "--config.sweep.datasets=()"], "config.sweep.datasets=() is empty"),
    ("experiments.sweep", [w, SWEEP, "--config.sweep.seeds=()"], "config.sweep.seeds=() is empty"),
    ("experiments.sweep", [w, SWEEP, "--config.sweep.noise=()"], "config.sweep.noise=() is empty"),
    ("experiments.sweep", [w, SWEEP, "--config.optim.learning_rate=inf"], "config.optim.learning_rate=inf is invalid"),
    ("experiments.sweep", ["--workdir=", SWEEP], "--workdir='' is empty"),
    ("experiments.measure", [f"--workdir={tmp}/no_such_run"], "does not exist"),
    ("experiments.measure", [f"--workdir={file}"], "is an existing file"),
    ("experiments.measure", [w, "--num_probes=many"], "many"),
    ("experiments.measure", [w, "--trace_method=exact"], "exact"),
    ("experiments.measure", [w, f"--out={file}"], f"--out={file!r} is an existing file"),
  ]
  rows = [(command, argv, text, False) for command, argv, text in rows] + bad_file_rows(tmp)
  return [(command, argv, f"{tmp}/WORKDIR", text, late) for command, argv, text, late in rows]


def bad_file_rows(tmp: str) -> list[tuple[str, list[str], str, bool]]:
  """Rows whose input is a damaged or misshapen file or folder (made by `write_bad_files` under tmp/in). The
  last element says the input is found only once the data is read (a transition matrix of another class count):
  progress lines may precede the error line. A workdir's damaged checkpoint is found once JAX has started but
  before the first progress line."""
  w, ft, files = f"--workdir={tmp}/WORKDIR", "experiments.finetune", f"{tmp}/in"
  pretrained = lambda name: [w, f"--config.model.pretrained={files}/{name}"]
  folder = lambda name, *more: [w, "--config.data.name=image_folder", f"--config.data.dir={files}/{name}", *more]
  transition = lambda name: [
    w,
    "--config.method=consistent",
    "--config.noise.type=symmetric",
    f"--config.consistent.transition={files}/{name}",
  ]
  rows = [
    (ft, pretrained("garbage.safetensors"), f"{files}/garbage.safetensors' is not a readable .safetensors file"),
    (ft, pretrained("empty.safetensors"), f"{files}/empty.safetensors' is not a readable .safetensors file"),
    (ft, [*pretrained("garbage.safetensors"), "--config.model.name=auto"], "garbage.safetensors' is not a readable"),
    (ft, pretrained("garbage.pth"), f"{files}/garbage.pth"),
    (ft, pretrained("garbage.msgpack"), f"{files}/garbage.msgpack' is not readable msgpack"),
    (ft, pretrained("empty.msgpack"), f"{files}/empty.msgpack' is not readable msgpack"),
    (ft, pretrained("damaged_run"), f"checkpoint {files}/damaged_run/checkpoints/5 cannot be read"),
    (ft, pretrained("bad_info_run"), f"{files}/bad_info_run/config.json' is not valid JSON"),
    (ft, transition("empty.json"), f"transition matrix file '{files}/empty.json' is unreadable"),
    (ft, transition("malformed.json"), f"transition matrix file '{files}/malformed.json' is unreadable"),
    (ft, transition("garbage.npy"), f"transition matrix file '{files}/garbage.npy' is unreadable"),
    (ft, transition("rows.json"), f"transition matrix in '{files}/rows.json' has shape (2, 3)"),
    (ft, transition("three.json"), f"transition matrix in '{files}/three.json' has shape (3, 3)", True),
    (ft, [w, "--config.data.name=image_folder", f"--config.data.dir={tmp}/FILE"], f"data_dir='{tmp}/FILE' is a file"),
    (ft, [w, "--config.data.name=mnist", f"--config.data.dir={tmp}/FILE"], f"data_dir='{tmp}/FILE' is a file"),
    (ft, [w, "--config.data.name=tfds:"], "config.data.name='tfds:'"),
    (ft, [w, "--config.data.name=tfds:a b"], "dataset='tfds:a b' does not name a tfds dataset"),
    (ft, [w, "--config.data.name=mnist", f"--config.data.dir={files}/truncated_idx"], "is truncated"),
    (ft, folder("empty_class"), "class folder 'c' holds no images"),
    (ft, folder("single_class"), "has a single class ('a')"),
    (ft, folder("no_images"), "holds no images in its class sub-folders"),
    (ft, folder("empty_train_class"), "class folder 'b' holds no images"),
    (ft, folder("few", "--config.data.test_fraction=0.6"), "class 'a' has no training images once test_fraction=0.6"),
    (ft, folder("corrupt_image"), f"image file '{files}/corrupt_image/a/bad.png' cannot be decoded"),
    (ft, folder("zero_byte_image"), f"image file '{files}/zero_byte_image/b/zero.jpg' cannot be decoded"),
    ("experiments.pretrain", folder("single_class"), "has a single class ('a')"),
    ("experiments.measure", [f"--workdir={files}/no_config_run"], "has no config.json"),
    ("experiments.measure", [f"--workdir={files}/truncated_results_run"], "results.json' is not valid JSON"),
    ("experiments.sweep", [f"--workdir={files}/sweep", SWEEP], f"{SWEEP_CELL}/results.json' is not valid JSON"),
  ]
  rows = [row if len(row) == 4 else (*row, False) for row in rows]
  if HAS_TORCH:
    rows += [
      (ft, pretrained("tensor.pth"), f"{files}/tensor.pth' holds a Tensor, not a state dict", False),
      (ft, pretrained("list.pth"), f"{files}/list.pth' holds a list, not a state dict", False),
      (ft, [*pretrained("tensor.pth"), "--config.model.name=auto"], "tensor.pth' holds a Tensor", False),
    ]
  return rows


def write_file(path: str, data: bytes) -> None:
  """`data` at `path`, its folder made."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


def write_png(path: str) -> None:
  """A grey 4x4 PNG at `path`."""
  import numpy as np
  from PIL import Image

  Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(path)


def write_run(workdir: str, files: dict[str, str], damaged: bool = False) -> None:
  """A workdir holding checkpoint 5 (a tiny 'model' tree; its data files overwritten when `damaged`) and `files`."""
  import numpy as np
  import orbax.checkpoint as ocp

  from ftjax import checkpoint_io

  manager = checkpoint_io.checkpoint_manager(os.path.join(workdir, "checkpoints"))
  model = {"params": {"w": np.ones((4, 3), np.float32)}, "batch_stats": {}}
  items = {"state": ocp.args.StandardSave({"step": np.int32(5)}), "model": ocp.args.StandardSave(model)}
  manager.save(5, args=ocp.args.Composite(**items))
  manager.wait_until_finished()
  manager.close()
  if damaged:
    data_dir = os.path.join(workdir, "checkpoints", "5", "model", "d")
    for name in os.listdir(data_dir):
      with open(os.path.join(data_dir, name), "wb") as f:
        f.write(b"damaged")
  for name, text in files.items():
    with open(os.path.join(workdir, name), "w") as f:
      f.write(text)


def write_bad_files(files: str) -> None:
  """The damaged and misshapen inputs `bad_file_rows` names, under `files`."""
  os.makedirs(files)
  for name, data in {
    "garbage.safetensors": b"not a safetensors header" * 4,
    "empty.safetensors": b"",
    "garbage.pth": b"not a pickle" * 8,
    "garbage.msgpack": b"\x01\x02 not msgpack",
    "empty.msgpack": b"",
    "empty.json": b"",
    "malformed.json": b"[[0.5, 0.5], [0.5",
    "rows.json": b"[[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]",
    "three.json": b"[[1, 0, 0], [0, 1, 0], [0, 0, 1]]",
    "garbage.npy": b"not an npy file",
  }.items():
    write_file(os.path.join(files, name), data)
  if HAS_TORCH:
    import torch

    torch.save(torch.zeros(3), os.path.join(files, "tensor.pth"))
    torch.save([torch.zeros(3)], os.path.join(files, "list.pth"))
  write_run(f"{files}/damaged_run", {}, damaged=True)
  write_run(f"{files}/bad_info_run", {"config.json": '{"model": "small_'})
  write_run(f"{files}/no_config_run", {"results.json": '{"steps": 5}'})
  write_run(f"{files}/truncated_results_run", {"config.json": "{}", "results.json": '{"steps": 5, "test_acc'})
  write_file(f"{files}/sweep/{SWEEP_CELL}/results.json", b'{"test_accuracy": 0.9')
  for name in IDX_FILES:  # headers of 10 28x28 images, holding 100 bytes of them
    write_file(f"{files}/truncated_idx/{name}", struct.pack(">HBBIII", 0, 8, 3, 10, 28, 28) + bytes(100))
  for name, counts in {
    "empty_class": {"a": 3, "b": 3, "c": 0},
    "single_class": {"a": 3},
    "no_images": {"a": 0, "b": 0},
    "empty_train_class": {"train/a": 2, "train/b": 0, "test/a": 1, "test/b": 1},
    "few": {"a": 1, "b": 3},
    "corrupt_image": {"a": 3, "b": 3},
    "zero_byte_image": {"a": 3, "b": 3},
  }.items():
    for label, count in counts.items():
      os.makedirs(f"{files}/{name}/{label}", exist_ok=True)
      for i in range(count):
        write_png(f"{files}/{name}/{label}/{i}.png")
  write_file(f"{files}/corrupt_image/a/bad.png", b"\x89PNG\r\n\x1a\n" + b"x" * 40)
  write_file(f"{files}/zero_byte_image/b/zero.jpg", b"")


CONFIG_FILES = {
  "syntax.py": "def get_config(:\n",
  "no_get_config.py": "X = 1\n",
  "raises.py": "def get_config():\n  raise RuntimeError('boom')\n",
}
UNEXPECTED = "from experiments import launch\n\ndef main(argv):\n  raise RuntimeError('surprise')\n\nlaunch.run(main)\n"


def run_batch(batch: list[tuple[str, list[str]]], tmp: str) -> list[tuple[int, str]]:
  """(exit code, stderr) of each (target, argv) of `batch`, all run by one helper process."""
  jobs = [(target, argv, f"{tmp}/stderr{i}.txt") for i, (target, argv) in enumerate(batch)]
  proc = subprocess.run(
    [sys.executable, os.path.abspath(__file__)],
    input=json.dumps(jobs),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
    env={**os.environ, "JAX_PLATFORMS": "cpu", "TMPDIR": tmp},
  )
  assert proc.returncode == 0, proc.stderr
  codes = json.loads(proc.stdout.splitlines()[-1])
  return [(code, open(path).read()) for code, (_, _, path) in zip(codes, jobs)]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
  tmp = str(tmp_path_factory.mktemp("bad_inputs"))
  os.makedirs(f"{tmp}/WORKDIR")
  with open(f"{tmp}/WORKDIR/results.json", "w") as f:
    f.write("earlier results")
  with open(f"{tmp}/FILE", "w") as f:
    f.write("a file, not a directory")
  os.makedirs(f"{tmp}/configs")
  for name, text in CONFIG_FILES.items():
    with open(f"{tmp}/configs/{name}", "w") as f:
      f.write(text)
  with open(f"{tmp}/unexpected.py", "w") as f:
    f.write(UNEXPECTED)
  write_bad_files(f"{tmp}/in")
  table = cases(tmp)
  before = {path: tree_hash(path) for path in (f"{tmp}/WORKDIR", f"{tmp}/FILE", f"{tmp}/in")}
  results = run_batch([(command, argv) for command, argv, _, _, _ in table], tmp)
  unexpected = run_batch([(f"{tmp}/unexpected.py", [])], tmp)[0]
  after = {path: tree_hash(path) for path in before}
  return table, results, before, after, unexpected, tmp


def test_table_covers_every_command_with_many_distinct_inputs(outcomes):
  table = outcomes[0]
  assert len({(command, tuple(argv)) for command, argv, _, _, _ in table}) == len(table) >= 70
  assert {command for command, _, _, _, _ in table} == {
    f"experiments.{c}" for c in ("finetune", "pretrain", "sweep", "measure")
  }


@pytest.mark.parametrize("index", range(len(cases("TMP"))))
def test_bad_input_is_one_line_exit_code_2_and_touches_nothing(outcomes, index):
  table, results, before, after, _, tmp = outcomes
  command, argv, _, text, late = table[index]
  code, stderr = results[index]
  lines = [line for line in stderr.splitlines() if line.strip()]
  if late:  # progress lines ('HH:MM:SS ...') may come first
    lines = [line for line in lines if not re.match(r"\d\d:\d\d:\d\d ", line)]
  assert code == 2, (command, argv, stderr)
  assert "Traceback" not in stderr, (command, argv, stderr)
  assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], (command, argv, stderr)
  assert after == before
  for path in (f"{tmp}/no_such_run", f"{tmp}/no", f"{tmp}/model.txt", "/proc/ftjax-bad-input"):
    assert not os.path.exists(path)


def test_an_unexpected_exception_is_one_line_naming_a_log_that_holds_its_traceback(outcomes):
  code, stderr = outcomes[4]
  lines = stderr.splitlines()
  assert code == 1 and len(lines) == 1 and "Traceback" not in stderr, stderr
  assert lines[0].startswith("error: unexpected RuntimeError: surprise (traceback in ")
  log_path = lines[0].rsplit("traceback in ", 1)[1].rstrip(")")
  assert os.path.dirname(log_path) == outcomes[5]
  with open(log_path) as f:
    logged = f.read()
  assert "Traceback (most recent call last)" in logged and "raise RuntimeError('surprise')" in logged


if __name__ == "__main__":
  main_of_runner()
