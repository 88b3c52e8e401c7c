"""Data: text sources, built-in datasets, class splits, tokenization cache, episodes."""

from jaxmaml.data.builtin import BUILTIN_SOURCES, load_builtin
from jaxmaml.data.debian import load_debian
from jaxmaml.data.episodes import EpisodeSampler, gather, IndexEpisodes
from jaxmaml.data.mixture import MixtureSampler
from jaxmaml.data.sources import from_lists, load_text_dataset, TextDataset
from jaxmaml.data.splits import resolve_split, split_classes, validate_split
from jaxmaml.data.tokenize import tokenize_dataset, TokenizedData
from jaxmaml.data.wordnet import (DEFAULT_SPLIT as WORDNET_DEFAULT_SPLIT, info as wordnet_info,
                                  LEXNAMES as WORDNET_CLASSES, load_wordnet)
from jaxmaml.data.wordnet_domains import load_wordnet_domains

__all__ = [
    "BUILTIN_SOURCES", "MixtureSampler", "load_builtin", "load_debian", "load_wordnet_domains",
    "EpisodeSampler", "IndexEpisodes", "TextDataset", "TokenizedData", "WORDNET_CLASSES",
    "WORDNET_DEFAULT_SPLIT", "from_lists", "gather", "load_text_dataset", "load_wordnet",
    "resolve_split", "split_classes", "tokenize_dataset", "validate_split", "wordnet_info",
]
