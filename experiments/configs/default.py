"""The default run: fine-tune the shipped Fashion-MNIST ResNet-18 on scikit-learn's digits.

Every field that `experiments.finetune` reads is defined here; other configs start from this one.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = ml_collections.ConfigDict()

  # Data (ftjax.data): 'digits', 'fashion_mnist', 'mnist', 'image_folder' or 'tfds:NAME'.
  config.dataset = "digits"
  config.data_dir = ""           # '' = the dataset's default location
  config.num_classes = 0         # 0 = the dataset's class count; otherwise must equal it
  config.test_fraction = 0.2     # held-out split for datasets without a test split
  config.examples_per_class = 0  # 0 = every training example; k = a seeded k-per-class subset
  config.image_size = 28
  config.channels = 1
  config.mean = (0.5,)
  config.std = (0.5,)
  config.crop_padding = 2
  config.flip = False

  # Synthetic label noise on the training split (SPEC §3.1; ftjax.label_noise).
  config.noise = ml_collections.ConfigDict()
  config.noise.type = "none"            # 'none', 'symmetric', 'pairflip', 'matrix'
  config.noise.rate = 0.0               # η in [0, 1)
  config.noise.seed = 0
  config.noise.symmetric_mode = "other"  # a flipped label is another class ('other') or any class ('any')
  config.noise.matrix = ()              # for 'matrix': C rows of the row-stochastic F[true, noisy]

  # Model (ftjax.models) and its source weights (ftjax.models.pretrained).
  config.model = "resnet18"    # or 'auto': model, width, stem, image_size, channels, mean, std from `pretrained`
  config.width = 16              # channels of the first stage (torchvision ResNets: 64)
  config.stem = "small"          # 'imagenet' (7x7/2 + max-pool) or 'small' (3x3/1)
  config.pretrained = "fashion_mnist_resnet18"

  # Optimisation (ftjax.optim).
  config.num_epochs = 20
  config.batch_size = 64         # global, over every device of every process
  config.eval_batch_size = 256
  config.optimizer = "sgd"       # 'sgd', 'adam', 'adamw'
  config.learning_rate = 0.05
  config.momentum = 0.9
  config.nesterov = True
  config.weight_decay = 0.0
  config.lr_schedule = "cosine"  # 'constant', 'cosine', 'step'
  config.lr_decay_epochs = ()    # for 'step': ×0.1 at each
  config.warmup_epochs = 0.0

  # Method (ftjax.methods.registry): 'none' (plain fine-tuning), 'l2', 'l2sp', 'penalty', 'constraint'.
  config.method = "none"

  # Distance regularisation (SPEC §2; ftjax.methods.distance_regularization).
  config.reg = ml_collections.ConfigDict()
  config.reg.norm = "frobenius"     # 'frobenius' or 'mars' (SPEC §2.1)
  config.reg.radius = 1.0           # D: radius of the first group ('constraint')
  config.reg.gamma = 1.0            # γ >= 1: growth of radii / penalty weights with depth (SPEC §2.4)
  config.reg.schedule = "depth"     # 'depth': D·γ^(g-1) per group (paper); 'authors': [LZ21] ResNet code
  config.reg.head_radius = 10.0     # D_head ('constraint')
  config.reg.bn_radius = 0.0        # D_bn of the BatchNorm constraint (SPEC §2.5); 0 = no BN constraint
  config.reg.weight = 0.01          # λ of 'l2', 'l2sp', 'penalty'
  config.reg.head_weight = 0.01     # λ_head
  config.reg.head_anchor = "zero"   # the head's reference point: 'zero' ([LZ21] code) or 'init'
  config.reg.mars_mode = "rescale"  # MARS projection: 'rescale' ([GHP21]/[LZ21] code) or 'exact'
  config.reg.groups = ()            # ('regex=group', ...) over param paths; () = the model's default
  config.reg.group_values = ()      # ('group=value', ...): explicit radii / weights overriding the schedule

  # Noisy-label methods (SPEC §3; ftjax.methods.noisy_labels): 'regsl' [LZ21] and 'consistent' [JLZ22].
  config.regsl = ml_collections.ConfigDict()
  config.regsl.constraint = True        # the layer-wise constraint of config.reg
  config.regsl.correction = True        # self label-correction (SPEC §3.2)
  config.regsl.reweighting = True       # label reweighting (SPEC §3.3)
  config.correction = ml_collections.ConfigDict()
  config.correction.threshold = 0.9     # τ
  config.correction.start_epoch = 10    # E_correct
  config.reweighting = ml_collections.ConfigDict()
  config.reweighting.start_epoch = 5    # E_reweight
  config.reweighting.temperature = 1.0  # T_0
  config.consistent = ml_collections.ConfigDict()
  config.consistent.constraint = True   # the layer-wise constraint of config.reg
  config.consistent.transition = "estimate"  # 'estimate' (dual-T), 'true' (the noise config's F) or a .json/.npy path
  config.consistent.estimator = "dual_t"     # 'dual_t' (SPEC §3.4) or 'anchor' (T_club alone)
  config.consistent.anchor_percentile = 97.0

  # Feature regularisation (SPEC §5; ftjax.methods.feature_regularization): 'delta' and 'bss'.
  config.delta = ml_collections.ConfigDict()
  config.delta.alpha = 0.01               # α: weight of the channel-weighted feature-map distance (DELTA code default)
  config.delta.beta = 0.01                # β: weight of ||W_head||² (DELTA code default)
  config.delta.num_batches = 2            # batches of batch_size the channel weights are measured on
  config.delta.normalization = "paper"    # 'paper' or 'authors' (standardised softmax/5, C/(H·W) scaling)
  config.bss = ml_collections.ConfigDict()
  config.bss.eta = 0.001                  # η (Chen et al. 2019)
  config.bss.k = 1                        # how many of the smallest singular values are shrunk

  # Label smoothing (SPEC §5; ftjax.methods.label_smoothing).
  config.label_smoothing = ml_collections.ConfigDict()
  config.label_smoothing.eps = 0.1        # ε: target (1 − ε)·onehot + ε/C (Szegedy et al. 2016)

  # Bookkeeping.
  config.seed = 0
  config.checkpoint_every = 200  # steps; a checkpoint is also written at the end
  config.log_every = 50          # steps
  config.eval_every = 0          # epochs; 0 = only at the end
  return config
