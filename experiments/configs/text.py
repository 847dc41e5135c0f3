"""Fine-tune a BERT or RoBERTa encoder on a text classification task.

Default (no argument): RoBERTa-base on GLUE's MRPC (paraphrase or not, sentence pairs) from the local TSV files of
GLUE's distribution (MRPC/train.tsv and dev.tsv; its test.tsv has no labels, so dev is the test split), with the
settings of the official fine-tuning code: AdamW at 2e-5 with weight decay 0.01, warm-up over the first 6% of the
steps, 10 epochs, batches of 32, sequences of at most 128 tokens, dropout 0.1, gradients clipped at norm 1 (the
learning rate decays by a cosine after the warm-up; the official code decays it linearly). Weights and data are
one field each; the architecture and the tokenizer are those of the Hugging Face directory:

  python -m experiments.finetune --workdir workdirs/mrpc --config experiments/configs/text.py \
      --config.model.name=auto --config.model.pretrained=/path/to/roberta-base --config.data.dir=/path/to/glue/MRPC

`:wordnet`: offline, the shipped `wordnet_nouns_bert_tiny` (a bert_tiny with a 4000-token WordPiece vocabulary,
trained from scratch on WordNet's noun synsets labelled by supersense; 24 classes) fine-tuned on `wordnet_verbs` (the
verb synsets' definitions, 14 supersenses). `model.pretrained` switches the weights (`model.name='auto'` and the
empty `data.tokenizer` follow them), `data.name` the dataset. It needs Debian's `wordnet-base`
(/usr/share/wordnet).

`:pretrain_wordnet`: the run that made that source model. Its tokenizer was trained, offline in seconds, on the
training splits' texts of wordnet_nouns and wordnet_verbs (`write_wordnet_tokenizer`), then the model pretrained:

  python -c "from experiments.configs import text; \
      text.write_wordnet_tokenizer('ftjax/pretrained_weights/wordnet_nouns_bert_tiny.tokenizer.json')"
  python -m experiments.pretrain --config experiments/configs/text.py:pretrain_wordnet --workdir workdirs/wordnet_src \
      --export ftjax/pretrained_weights/wordnet_nouns_bert_tiny.msgpack
"""

import os

import ml_collections

from experiments.configs import default
from ftjax import data
from ftjax.models import pretrained

VARIANTS = ("mrpc", "wordnet", "pretrain_wordnet")
WORDNET_SOURCE = "wordnet_nouns_bert_tiny"
WORDNET_TOKENIZER = os.path.join(pretrained.WEIGHTS_DIR, WORDNET_SOURCE + pretrained.TOKENIZER_SUFFIX)
WORDNET_VOCABULARY = 4000
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4; [PAD] is bert's pad_token_id


def write_wordnet_tokenizer(path: str, vocab_size: int = WORDNET_VOCABULARY) -> None:
  """Trains BERT's kind of WordPiece tokenizer (lowercased, accents stripped, SPECIAL_TOKENS first; single texts
  [CLS] a [SEP], pairs [CLS] a [SEP] b [SEP]) of `vocab_size` tokens on the training texts of wordnet_nouns and
  wordnet_verbs, and writes its tokenizer.json to `path`."""
  from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

  texts = [text for name in ("wordnet_nouns", "wordnet_verbs") for text in data.load_dataset(name).train.texts]
  tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
  tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tokenizer.decoder = decoders.WordPiece()
  trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
  tokenizer.train_from_iterator(texts, trainer)
  cls, sep = (SPECIAL_TOKENS.index(token) for token in ("[CLS]", "[SEP]"))
  tokenizer.post_processor = processors.TemplateProcessing(
    single="[CLS]:0 $A:0 [SEP]:0",
    pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
    special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
  )
  tokenizer.save(path)


def _adamw(config: ml_collections.ConfigDict, learning_rate: float, batch_size: int, num_epochs: int) -> None:
  """AdamW with weight decay 0.01, warm-up over the first 6% of the steps, cosine decay, clipping at norm 1."""
  config.optim.name = "adamw"
  config.optim.learning_rate = learning_rate
  config.optim.weight_decay = 0.01
  config.optim.batch_size = batch_size
  config.optim.num_epochs = num_epochs
  config.optim.warmup_epochs = 0.06 * num_epochs
  config.optim.lr_schedule = "cosine"
  config.optim.grad_clip_norm = 1.0


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or "mrpc"
  if variant not in VARIANTS:
    raise ValueError(f"text config argument {arg!r}; valid: none, {', '.join(repr(v) for v in VARIANTS)}")
  config = default.get_config()
  config.model.dropout_rate = 0.1
  config.optim.eval_batch_size = 128
  config.run.checkpoint_every = 500
  config.run.log_every = 50
  if variant == "mrpc":
    config.model.name = "roberta_base"
    config.model.pretrained = "none"  # set to a Hugging Face roberta-base directory, with model.name=auto
    config.data.name = "text_files"  # set data.dir to GLUE's MRPC folder
    config.data.splits = ("train", "dev")
    config.data.text_columns = ("#1 String", "#2 String")
    config.data.label_column = "Quality"
    config.data.max_length = 128
    _adamw(config, learning_rate=2e-5, batch_size=32, num_epochs=10)
  elif variant == "wordnet":
    config.model.name = "auto"
    config.model.pretrained = WORDNET_SOURCE
    config.data.name = "wordnet_verbs"
    config.data.max_length = 64
    _adamw(config, learning_rate=3e-3, batch_size=64, num_epochs=5)
  else:
    config.model.name = "bert_tiny"
    config.model.vocab_size = WORDNET_VOCABULARY
    config.model.pretrained = "none"
    config.data.name = "wordnet_nouns"
    config.data.tokenizer = WORDNET_TOKENIZER
    config.data.max_length = 64
    _adamw(config, learning_rate=2e-3, batch_size=128, num_epochs=4)
    config.run.eval_every = 0
    config.run.log_every = 100
  return config
