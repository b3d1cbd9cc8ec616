"""The bundled digits: CIFAR layout, stratified fixed test split, determinism, no download,
its statistics and flip-free augmentation, and one real training segment on it."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from econas_hpc.data.augment import augment_for, crop_flip
from econas_hpc.data.cifar import DATASETS, load_dataset, split_holdout
from econas_hpc.data.digits import (
    DIGITS_MEAN,
    DIGITS_STD,
    TEST_SIZE,
    TRAIN_SIZE,
    load_digits_split,
    stratified_test_indices,
)
from econas_hpc.recipes import make_recipe
from econas_hpc.settings import Base, Setting
from econas_hpc.space.catalog import get_builtin
from econas_hpc.train.segment import SegmentSpec, run_segment


@pytest.fixture(scope="module")
def split() -> tuple[object, object]:
    return load_digits_split()


def test_listed_as_a_dataset() -> None:
    assert "digits" in DATASETS


def test_shapes_and_classes(split: tuple) -> None:
    train, test = split
    assert (len(train), len(test)) == (TRAIN_SIZE, TEST_SIZE) == (1347, 450)
    for ds in (train, test):
        assert ds.images.dtype == np.uint8 and ds.images.shape[1:] == (32, 32, 3)
        assert ds.labels.dtype == np.int64
        assert set(np.unique(ds.labels)) == set(range(10))
    # three equal channels, 4x4 blocks of one value (native pixels replicated)
    img = train.images
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])
    blocks = img[..., 0].reshape(-1, 8, 4, 8, 4)
    assert np.array_equal(blocks.min(axis=(2, 4)), blocks.max(axis=(2, 4)))
    assert img.max() == 255 and img.min() == 0


def test_split_is_stratified_disjoint_and_complete(split: tuple) -> None:
    train, test = split
    raw = load_digits()
    counts = np.bincount(raw.target, minlength=10)
    assert np.array_equal(np.bincount(test.labels, minlength=10), np.rint(counts / 4))
    # every original image lands in exactly one part: compare native pixels as byte strings
    native = np.rint(raw.images * 255 / 16).astype(np.uint8)
    ours = np.concatenate([train.images, test.images])[:, ::4, ::4, 0]
    key = sorted(x.tobytes() + bytes([y]) for x, y in zip(native, raw.target, strict=True))
    mine = np.concatenate([train.labels, test.labels])
    assert sorted(x.tobytes() + bytes([y]) for x, y in zip(ours, mine, strict=True)) == key


def test_deterministic_and_seeded(split: tuple) -> None:
    train, test = split
    again_train, again_test = load_digits_split()
    assert np.array_equal(train.images, again_train.images)
    assert np.array_equal(test.labels, again_test.labels)
    labels = load_digits().target
    other = stratified_test_indices(labels, 0.25, seed=1)
    assert not np.array_equal(other, stratified_test_indices(labels, 0.25, seed=0))


def test_selection_split_from_training_part(split: tuple) -> None:
    train, _ = split
    rest, val = split_holdout(train, 270, seed=0)
    assert (len(rest), len(val)) == (1077, 270)


def test_no_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the digits loader opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    train, test = load_dataset("digits", tmp_path / "unused", download=True)
    assert len(train) + len(test) == 1797
    assert not (tmp_path / "unused").exists()  # nothing written


def test_statistics_match_the_training_part(split: tuple) -> None:
    grey = split[0].images[..., 0] / 255.0
    assert grey.mean() == pytest.approx(DIGITS_MEAN[0], abs=1e-4)
    assert grey.std() == pytest.approx(DIGITS_STD[0], abs=1e-4)


def test_r4_is_the_native_grid(split: tuple) -> None:
    test = split[1]
    aug = augment_for("digits", 8, 0, "cpu")
    x = aug.eval_batch(torch.from_numpy(test.images[:64]))
    assert tuple(x.shape) == (64, 3, 8, 8)
    native = torch.from_numpy(test.images[:64, ::4, ::4, 0]).float()
    back = x[:, 0] * (255 * DIGITS_STD[0]) + 255 * DIGITS_MEAN[0]
    corr = np.corrcoef(back.flatten().numpy(), native.flatten().numpy())[0, 1]
    assert corr > 0.95


def _rows_increase(batch: torch.Tensor) -> torch.Tensor:
    """Per sample: do the nonzero values of every row increase from left to right?"""
    v = batch[..., 0].long()
    diffs = v[:, :, 1:] - v[:, :, :-1]
    both = (v[:, :, 1:] > 0) & (v[:, :, :-1] > 0)
    return ((diffs > 0) | ~both).flatten(1).all(dim=1)


def test_digits_augmentation_never_flips() -> None:
    cols = torch.arange(1, 33, dtype=torch.uint8).view(1, 1, 32, 1)
    images = cols.expand(64, 32, 32, 3).contiguous()
    g = torch.Generator().manual_seed(0)
    assert bool(_rows_increase(crop_flip(images, g, flip_allowed=False)).all())
    g = torch.Generator().manual_seed(0)
    assert not bool(_rows_increase(crop_flip(images, g, flip_allowed=True)).all())
    assert augment_for("digits", 8, 0, "cpu").flip is False
    assert augment_for("cifar10", 8, 0, "cpu").flip is True


def test_one_segment_trains_on_digits(tmp_path: Path) -> None:
    base = Base("tiny", channels=8, resolution=32, layers=3, num_classes=10, train_size=1347)
    setting = Setting.parse("c2r4s0e1", base)
    recipe = make_recipe("search", setting, "supplement", {"batch_size": 64, "lr_max": 0.1})
    genotype = get_builtin("darts_v2")
    spec = SegmentSpec(
        arch_id=genotype.arch_id,
        genotype_json=genotype.to_json(),
        setting=str(setting),
        recipe=recipe,
        epoch_start=0,
        epoch_end=1,
        run_dir=str(tmp_path / "net"),
        dataset="digits",
        data_dir=str(tmp_path / "data"),
        device="cpu",
        base=base,
    )
    result = run_segment(spec)
    assert result.status == "ok" and result.selection == "val"
    assert len(result.test_acc) == 1 and 0.0 <= result.test_acc[0] <= 100.0
