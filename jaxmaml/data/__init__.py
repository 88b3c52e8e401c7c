"""Data: text sources, WordNet supersenses, class splits, tokenization cache, episodes."""

from jaxmaml.data.episodes import EpisodeSampler, IndexEpisodes, gather
from jaxmaml.data.sources import TextDataset, from_lists, load_text_dataset
from jaxmaml.data.splits import resolve_split, split_classes, validate_split
from jaxmaml.data.tokenize import TokenizedData, tokenize_dataset
from jaxmaml.data.wordnet import DEFAULT_SPLIT as WORDNET_DEFAULT_SPLIT
from jaxmaml.data.wordnet import LEXNAMES as WORDNET_CLASSES
from jaxmaml.data.wordnet import info as wordnet_info
from jaxmaml.data.wordnet import load_wordnet

__all__ = [
    "EpisodeSampler", "IndexEpisodes", "TextDataset", "TokenizedData", "WORDNET_CLASSES",
    "WORDNET_DEFAULT_SPLIT", "from_lists", "gather", "load_text_dataset", "load_wordnet",
    "resolve_split", "split_classes", "tokenize_dataset", "validate_split", "wordnet_info",
]
