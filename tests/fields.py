"""Setting config fields by name in tests: `set_fields(config, optim__batch_size=8)` sets config.optim.batch_size."""

import ml_collections


def set_fields(config: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
  """`config` (changed in place) with each `section__field=value` of `fields` set (a dict value updates the
  sub-dict it names); returns it."""
  for name, value in fields.items():
    *parents, leaf = name.split("__")
    node = config
    for part in parents:
      node = node[part]
    if isinstance(value, dict):
      node[leaf].update(value)
    else:
      node[leaf] = value
  return config


def untrained_bert_tiny_config(**fields) -> ml_collections.ConfigDict:
  """The WordNet text config with an untrained bert_tiny (its vocabulary and tokenizer the shipped WordNet ones,
  batches of 4), then `fields` set."""
  from experiments.configs import text

  config = text.get_config("wordnet")
  set_fields(
    config,
    model__name="bert_tiny",
    model__vocab_size=text.WORDNET_VOCABULARY,
    model__pretrained="none",
    data__tokenizer=text.WORDNET_TOKENIZER,
    optim__batch_size=4,
  )
  return set_fields(config, **fields)
