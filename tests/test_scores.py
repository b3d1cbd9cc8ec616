"""What status/best say their scores are, and the test accuracy they show beside them."""

from __future__ import annotations

import json
from pathlib import Path

from econas_hpc.records import NetworkRecord
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.runfile import TrainOptions
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.search.scores import final_test_accuracy, score_meaning
from econas_hpc.search.workitems import result_file
from econas_hpc.space.catalog import get_builtin

GENOTYPE = get_builtin("darts_v2")
DIGITS = SearchConfig(dataset="digits", setting="c5r4s0e6", segments=3, segment_epochs=2)


def test_selection_split_named_with_its_size() -> None:
    text = score_meaning(DIGITS, TrainOptions(recipe={"val_fraction": 0.2}))
    assert "selection accuracy" in text
    assert "269 images held out of the 1347 training images of digits" in text
    assert "450 test images" in text
    default = score_meaning(DIGITS.replace(dataset="cifar10"), None)
    assert "5000 images held out of the 50000 training images of cifar10" in default


def test_official_profile_selects_on_the_test_set() -> None:
    text = score_meaning(DIGITS.replace(profile="official"), None)
    assert text.startswith("score: test accuracy (%) on the 450 test images of digits")


def _net(segments_done: int) -> NetworkRecord:
    scores = (90.0, 92.0, float("nan"))
    return NetworkRecord(
        GENOTYPE.arch_id, "", GENOTYPE.to_json(), 0, 0, segments_done, scores, status="ok"
    )


def test_final_test_accuracy_from_the_latest_result(tmp_path: Path) -> None:
    paths = RunPaths.of(tmp_path / "run.h5")
    path = result_file(paths, DIGITS, GENOTYPE.arch_id, 2)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"test_acc": [80.0, 93.5]}))
    assert final_test_accuracy(paths, DIGITS, _net(2)) == 93.5
    assert final_test_accuracy(paths, DIGITS, _net(0)) is None  # nothing trained yet
    assert final_test_accuracy(paths, DIGITS.replace(dry_run=True), _net(2)) is None
    path.write_text("{not json")
    assert final_test_accuracy(paths, DIGITS, _net(2)) is None
    path.unlink()
    assert final_test_accuracy(paths, DIGITS, _net(2)) is None
