"""Corpus engine: paired speech + FLAME motion (docs/corpus.md).

Build with `thunder-train corpus build`; read with `training.corpus.dataset.load_corpus(DIR)`.
"""
