"""What a run's scores are: the selection split they are measured on, and the test accuracy.

This module owns the words `status` and `best` put next to a score (`score_meaning`: which
split, of which dataset, how many images) and `final_test_accuracy`, a network's test accuracy
at the end of its latest segment, read from that segment's result file. The search ranks by the
selection score only; the test accuracy is reported beside it and never steers the search
(unless the profile selects on the test set, which `score_meaning` then says).

Reads result files and nothing else; no torch, no h5py.
"""

from __future__ import annotations

import json
import math

from econas_hpc.data.digits import TEST_SIZE as DIGITS_TEST
from econas_hpc.data.digits import TRAIN_SIZE as DIGITS_TRAIN
from econas_hpc.recipes import make_recipe
from econas_hpc.records import NetworkRecord
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.runfile import TrainOptions
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.search.workitems import result_file
from econas_hpc.settings import Setting

__all__ = ["dataset_sizes", "final_test_accuracy", "score_meaning"]


def dataset_sizes(cfg: SearchConfig) -> tuple[int, int]:
    """(training images, test images) of the run's dataset."""
    if cfg.dataset == "digits":
        return DIGITS_TRAIN, DIGITS_TEST
    if cfg.dataset == "synthetic":
        return cfg.synthetic_train, cfg.synthetic_test
    return 50000, 10000  # CIFAR-10


def score_meaning(cfg: SearchConfig, train: TrainOptions | None) -> str:
    """One line: what a search score is, e.g. "selection accuracy (%) on 270 images held out of
    the 1347 training images of digits; test acc: its 450 test images, after the last segment".
    """
    overrides = dict(train.recipe) if train is not None else {}
    setting = Setting.parse(cfg.setting)
    recipe = make_recipe("search", setting, cfg.profile, overrides)
    n_train, n_test = dataset_sizes(cfg)
    tail = f"test acc: its {n_test} test images, after the network's latest segment"
    if recipe.selection == "test":
        return f"score: test accuracy (%) on the {n_test} test images of {cfg.dataset}; {tail}"
    held_out = max(1, round(n_train * recipe.val_fraction))
    return (
        f"score: selection accuracy (%) on {held_out} images held out of the {n_train} "
        f"training images of {cfg.dataset}; {tail}"
    )


def final_test_accuracy(paths: RunPaths, cfg: SearchConfig, net: NetworkRecord) -> float | None:
    """Test accuracy (%) at the last epoch of `net`'s latest segment; None when unknown (no
    segment done, a dry run, or the result file gone or unreadable)."""
    if net.segments_done < 1 or cfg.dry_run:
        return None
    path = result_file(paths, cfg, net.arch_id, net.segments_done)
    try:
        values = json.loads(path.read_text(encoding="utf-8")).get("test_acc") or []
        value = float(values[-1])
    except (OSError, ValueError, TypeError, AttributeError, IndexError):
        return None
    return value if math.isfinite(value) else None
