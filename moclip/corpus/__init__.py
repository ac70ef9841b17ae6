"""Corpus adapters: each reads one video corpus into one table (``video_id, path, label, split, group``)."""

from moclip.corpus.folder import load_folder
from moclip.corpus.hmdb51 import load_hmdb51
from moclip.corpus.manifest import load_manifest
from moclip.corpus.spec import LAYOUTS, CorpusSpec, check_corpus, load_corpus
from moclip.corpus.table import (
    SPLITS,
    TABLE_COLUMNS,
    CorpusError,
    is_video_file,
    list_videos,
    make_table,
    validate_table,
)
from moclip.corpus.ucf101 import load_ucf101, read_class_index, ucf101_group
from moclip.corpus.unlabeled import load_unlabeled

__all__ = [
    "LAYOUTS",
    "check_corpus",
    "SPLITS",
    "TABLE_COLUMNS",
    "CorpusError",
    "CorpusSpec",
    "is_video_file",
    "load_corpus",
    "load_folder",
    "load_hmdb51",
    "load_manifest",
    "load_ucf101",
    "load_unlabeled",
    "make_table",
    "read_class_index",
    "list_videos",
    "ucf101_group",
    "validate_table",
]
