"""Tests of the data layer's datasets: synthetic writers, CIFAR reader, splits, ImageNet."""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from econas_hpc.data import synthetic
from econas_hpc.data.augment import DeviceAugment, epoch_order
from econas_hpc.data.cifar import (
    CIFAR_URL,
    ArrayDataset,
    load_cifar10,
    load_dataset,
    split_holdout,
    subset_for,
)
from econas_hpc.data.imagenet import ShardOrder, make_imagenet_loaders
from econas_hpc.data.synthetic import write_synthetic_cifar, write_synthetic_imagenet
from econas_hpc.errors import ConfigError, DataError

FILES = (
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
    "batches.meta",
)


@pytest.fixture(scope="module")
def small_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic CIFAR root (n_train=500, n_test=100, seed 0), written once."""
    root = tmp_path_factory.mktemp("cifar")
    write_synthetic_cifar(root, n_train=500, n_test=100, seed=0)
    return root


def _ids(n: int) -> ArrayDataset:
    """A dataset whose label is the sample's index, so splits can be traced."""
    return ArrayDataset(np.zeros((n, 32, 32, 3), np.uint8), np.arange(n, dtype=np.int64))


# --- synthetic CIFAR ------------------------------------------------------------------------


def test_synthetic_cifar_has_the_real_format(small_cifar: Path) -> None:
    folder = small_cifar / "cifar-10-batches-py"
    total = 0
    for name in FILES[:6]:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
        data, labels = batch[b"data"], batch[b"labels"]
        assert data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
        assert isinstance(labels, list) and all(type(x) is int and 0 <= x <= 9 for x in labels)
        assert len(labels) == len(batch[b"filenames"]) == data.shape[0]
        assert isinstance(batch[b"batch_label"], bytes)
        total += data.shape[0] if name != "test_batch" else 0
    assert total == 500
    with open(folder / "batches.meta", "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    assert len(meta[b"label_names"]) == 10 and meta[b"num_vis"] == 3072


def test_synthetic_cifar_is_deterministic_and_seeded(tmp_path: Path) -> None:
    a = write_synthetic_cifar(tmp_path / "a", 50, 20, seed=3)
    b = write_synthetic_cifar(tmp_path / "b", 50, 20, seed=3)
    c = write_synthetic_cifar(tmp_path / "c", 50, 20, seed=4)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "data_batch_1").read_bytes() != (c / "data_batch_1").read_bytes()


def test_synthetic_cifar_is_idempotent_and_replaces_only_synthetic(tmp_path: Path) -> None:
    folder = write_synthetic_cifar(tmp_path, 50, 20, seed=0)
    stamp = (folder / "data_batch_1").stat().st_mtime_ns
    assert write_synthetic_cifar(tmp_path, 50, 20, seed=0) == folder
    assert (folder / "data_batch_1").stat().st_mtime_ns == stamp  # nothing rewritten
    write_synthetic_cifar(tmp_path, 60, 20, seed=0)  # other parameters: replaced
    train, _ = load_cifar10(tmp_path, download=False)
    assert len(train) == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py"]  # no temp left
    (folder / synthetic.MARKER).unlink()  # now it looks like real data: never overwritten
    with pytest.raises(DataError, match="not a synthetic dataset"):
        write_synthetic_cifar(tmp_path, 50, 20, seed=0)
    assert len(load_cifar10(tmp_path, download=False)[0]) == 60


def test_synthetic_images_are_learnable_at_8px(tmp_path: Path) -> None:
    """A 3-layer CNN, 2 epochs on 2000 images at 8 px, clearly beats chance (10 %)."""
    train, test = load_dataset("synthetic", tmp_path, n_train=2000, n_test=500, seed=0)
    torch.manual_seed(0)
    aug = DeviceAugment(8, 0, "cpu")
    x_train, x_test = (
        aug.eval_batch(torch.from_numpy(train.images)),
        aug.eval_batch(torch.from_numpy(test.images)),
    )
    y_train, y_test = torch.from_numpy(train.labels), torch.from_numpy(test.labels)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1, stride=2),
        torch.nn.BatchNorm2d(32),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, padding=1, stride=2),
        torch.nn.BatchNorm2d(64),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 10),
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for epoch in range(2):
        for idx in epoch_order(len(train), 0, epoch).split(64):
            loss = torch.nn.functional.cross_entropy(net(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.25, accuracy


# --- CIFAR reader ---------------------------------------------------------------------------


def test_load_cifar10_reads_what_was_written(small_cifar: Path) -> None:
    train, test = load_cifar10(small_cifar, download=False)
    assert train.images.shape == (500, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (100, 32, 32, 3) and test.labels.dtype == np.int64
    assert np.bincount(train.labels, minlength=10).tolist() == [50] * 10
    with open(small_cifar / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    first = raw[b"data"][0]  # 1024 R values, then G, then B
    assert np.array_equal(train.images[0, :, :, 0].ravel(), first[:1024])
    assert np.array_equal(train.images[0, :, :, 2].ravel(), first[2048:])
    assert train.labels[0] == raw[b"labels"][0]


def test_missing_cifar_names_directory_layout_and_source(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path / "nowhere", download=False)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "data_batch_1..5, test_batch" in message
    assert CIFAR_URL in message and "--dataset synthetic" in message


def test_failed_download_is_one_line_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match="download failed") as info:
        load_cifar10(tmp_path, download=True)
    assert "\n" not in str(info.value) and CIFAR_URL in str(info.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_batch_names_the_file(tmp_path: Path, damage: str) -> None:
    folder = write_synthetic_cifar(tmp_path, 50, 20, seed=0)
    path = folder / "data_batch_3"
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage == "truncate" else b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(tmp_path, download=False)


# --- splits and subsets ---------------------------------------------------------------------


def test_split_holdout_is_deterministic_and_disjoint() -> None:
    data = _ids(1000)
    train, val = split_holdout(data, 100, seed=7)
    again_train, again_val = split_holdout(data, 100, seed=7)
    assert np.array_equal(val.labels, again_val.labels)
    assert np.array_equal(train.labels, again_train.labels)
    assert (len(train), len(val)) == (900, 100)
    assert not set(train.labels) & set(val.labels)
    assert set(train.labels) | set(val.labels) == set(range(1000))
    assert not np.array_equal(split_holdout(data, 100, seed=8)[1].labels, val.labels)
    with pytest.raises(ConfigError, match="val_size=1000"):
        split_holdout(data, 1000, seed=0)


def test_subset_for_is_a_fixed_fraction() -> None:
    data = _ids(1000)
    assert subset_for(data, 0, seed=1) is data
    quarter = subset_for(data, 4, seed=1)
    assert len(quarter) == 250 and len(set(quarter.labels)) == 250
    assert np.array_equal(quarter.labels, subset_for(data, 4, seed=1).labels)
    assert not np.array_equal(quarter.labels, subset_for(data, 4, seed=2).labels)
    with pytest.raises(ConfigError, match="s=-1"):
        subset_for(data, -1, seed=0)


def test_load_dataset_synthetic_and_unknown(tmp_path: Path) -> None:
    train, test = load_dataset("synthetic", tmp_path, n_train=50, n_test=20, seed=0)
    assert (len(train), len(test)) == (50, 20)
    with pytest.raises(ConfigError, match="cifar10, digits, synthetic"):
        load_dataset("mnist", tmp_path)


# --- ImageNet -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_imagenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_imagenet(
        tmp_path_factory.mktemp("inet") / "imagenet", classes=4, per_class=6, size=40, seed=0
    )


def test_synthetic_imagenet_loads_through_image_folder(small_imagenet: Path) -> None:
    assert len(list((small_imagenet / "train").glob("*/*.png"))) == 24
    train, val = make_imagenet_loaders(
        small_imagenet,
        resolution=32,
        batch_size=5,
        rank=1,
        world_size=2,
        seed=3,
        epoch=2,
        workers=0,
    )
    assert train.dataset.classes == val.dataset.classes == [f"class_{c:03d}" for c in range(4)]
    x, y = next(iter(train))
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    order = ShardOrder(24, 1, 2, seed=3)
    order.set_epoch(2)
    assert list(train.sampler) == order.indices()
    assert sum(len(b[1]) for b in val) == 12  # rank 1 of 2 sees half the 24 val images


@pytest.mark.parametrize(("n", "world"), [(24, 4), (10, 3), (2, 4)])
def test_shard_order_partitions_and_is_seeded(n: int, world: int) -> None:
    def shards(seed: int, epoch: int) -> list[list[int]]:
        out = []
        for rank in range(world):
            sampler = ShardOrder(n, rank, world, seed=seed)
            sampler.set_epoch(epoch)
            out.append(sampler.indices())
        return out

    parts = shards(0, 1)
    assert len({len(p) for p in parts}) == 1 and len(parts[0]) == -(-n // world)
    flat = [i for p in parts for i in p]
    assert set(flat) == set(range(n))  # every sample is seen; only the padding repeats
    if n % world == 0:
        assert sorted(flat) == list(range(n))
    assert shards(0, 1) == parts
    if n >= 10:  # with 2 samples other seeds may well draw the same order
        assert shards(0, 2) != parts and shards(1, 1) != parts
    evaluation = [ShardOrder(n, r, world, shuffle=False).indices() for r in range(world)]
    assert sorted(i for p in evaluation for i in p) == list(range(n))


def test_missing_imagenet_folder_names_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        make_imagenet_loaders(tmp_path, resolution=32, batch_size=4, workers=0)
    assert str(tmp_path / "train") in str(info.value) and "<root>/train/<class>/" in str(info.value)
