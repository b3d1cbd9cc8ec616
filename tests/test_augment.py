"""Tests of the batched augmentation: PIL-equivalent resize, crop/flip, cutout, data order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from econas_hpc.data.augment import (
    CIFAR_MEAN,
    CIFAR_STD,
    PAD,
    DeviceAugment,
    DeviceDataset,
    crop_flip,
    cutout_mask,
    epoch_order,
    make_generator,
)
from econas_hpc.data.cifar import ArrayDataset, load_cifar10
from econas_hpc.data.synthetic import write_synthetic_cifar


@pytest.fixture(scope="module")
def synthetic_images(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    root = tmp_path_factory.mktemp("cifar")
    write_synthetic_cifar(root, n_train=100, n_test=10, seed=1)
    return load_cifar10(root, download=False)[0].images


def _random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _pil_resize(images: np.ndarray, res: int) -> np.ndarray:
    resize = transforms.Resize(res, interpolation=transforms.InterpolationMode.BILINEAR)
    return np.stack([np.asarray(resize(Image.fromarray(x))) for x in images]).astype(np.float64)


@pytest.mark.parametrize("res", [8, 16, 4])
@pytest.mark.parametrize("source", ["random", "synthetic"])
def test_resize_matches_pil_bilinear(res: int, source: str, synthetic_images: np.ndarray) -> None:
    images = _random_images(100) if source == "random" else synthetic_images
    aug = DeviceAugment(res, 0, "cpu", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    ours = aug.eval_batch(torch.from_numpy(images)).permute(0, 2, 3, 1).double().numpy() * 255
    diff = np.abs(ours - _pil_resize(images, res))
    # Tolerance of the docstring: PIL rounds to uint8; we emulate its two rounded passes.
    assert diff.max() <= 1.5 and diff.mean() < 0.5
    assert diff.mean() < 0.02  # the two-pass emulation, not just "close": measured <= 0.005


def test_eval_batch_equals_torchvision_reference_pipeline() -> None:
    images = _random_images(16, seed=1)
    reference = transforms.Compose(
        [
            transforms.Resize(8, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
        ]
    )
    expected = torch.stack([reference(Image.fromarray(x)) for x in images])
    ours = DeviceAugment(8, 0, "cpu").eval_batch(torch.from_numpy(images))
    one_level = 1.0 / 255 / min(CIFAR_STD) + 1e-5
    assert (ours - expected).abs().max().item() <= one_level


@pytest.mark.parametrize("res", [32, 16, 8])
def test_eval_batch_shape(res: int) -> None:
    out = DeviceAugment(res, 0, "cpu").eval_batch(torch.from_numpy(_random_images(5)))
    assert out.shape == (5, 3, res, res) and out.dtype == torch.float32 and out.is_contiguous()


def _replay_crop_draws(generator: torch.Generator, n: int) -> tuple[torch.Tensor, ...]:
    oy = torch.randint(0, 2 * PAD + 1, (n, 1), generator=generator)
    ox = torch.randint(0, 2 * PAD + 1, (n, 1), generator=generator)
    flip = torch.randint(0, 2, (n, 1), generator=generator).bool()
    return oy[:, 0], ox[:, 0], flip[:, 0]


def test_crop_flip_is_a_shifted_window_of_the_padded_image() -> None:
    n = 200
    images = torch.from_numpy(_random_images(n, seed=2))
    g = torch.Generator().manual_seed(5)
    replay = torch.Generator().set_state(g.get_state())
    out = crop_flip(images, g)
    oy, ox, flip = _replay_crop_draws(replay, n)
    padded = torch.nn.functional.pad(images.permute(0, 3, 1, 2), (PAD,) * 4).permute(0, 2, 3, 1)
    for i in range(n):
        window = padded[i, oy[i] : oy[i] + 32, ox[i] : ox[i] + 32]
        expected = window.flip(1) if flip[i] else window
        assert torch.equal(out[i], expected), i
    assert set(oy.tolist()) == set(range(9)) and set(ox.tolist()) == set(range(9))
    assert 0 < int(flip.sum()) < n


def test_train_batch_at_32px_without_cutout_is_crop_flip_then_normalise() -> None:
    images = torch.from_numpy(_random_images(8, seed=3))
    aug = DeviceAugment(32, 0, "cpu")
    out = aug.train_batch(images, torch.Generator().manual_seed(1))
    expected = aug.eval_batch(crop_flip(images, torch.Generator().manual_seed(1)))
    assert torch.allclose(out, expected)


@pytest.mark.parametrize(("side", "length"), [(8, 4), (32, 16), (8, 3)])
def test_cutout_zeroes_a_square_clipped_at_the_borders(side: int, length: int) -> None:
    n = 300
    g = torch.Generator().manual_seed(0)
    replay = torch.Generator().set_state(g.get_state())
    mask = cutout_mask(n, torch.arange(side), length, g)
    centre = torch.randint(0, side, (2, n, 1), generator=replay)[:, :, 0]
    assert mask.shape == (n, 1, side, side)
    for i in range(n):
        cy, cx = int(centre[0, i]), int(centre[1, i])
        expected = torch.ones(side, side)
        y0, y1 = max(cy - length // 2, 0), min(cy + length // 2, side)
        x0, x1 = max(cx - length // 2, 0), min(cx + length // 2, side)
        expected[y0:y1, x0:x1] = 0
        assert torch.equal(mask[i, 0], expected), i
    holes = (mask == 0).sum(dim=(1, 2, 3))
    full = (length // 2 * 2) ** 2  # DARTS' square is 2 * (length // 2) wide
    assert int(holes.max()) == full and int(holes.min()) < full  # clipped near the borders


def test_train_batch_writes_cutout_zeros_after_normalisation() -> None:
    images = torch.full((64, 32, 32, 3), 200, dtype=torch.uint8)  # normalises to non-zero
    out = DeviceAugment(8, 4, "cpu").train_batch(images, torch.Generator().manual_seed(0))
    zeros = (out == 0).all(dim=1).sum(dim=(1, 2))  # zeroed pixels per image, all channels
    assert int(zeros.max()) == 16 and int(zeros.min()) >= 1
    assert out.shape == (64, 3, 8, 8)


def test_train_batch_is_deterministic_per_generator_seed() -> None:
    images = torch.from_numpy(_random_images(32, seed=4))
    aug = DeviceAugment(8, 4, "cpu")
    a = aug.train_batch(images, make_generator(seed=0, epoch=3))
    b = aug.train_batch(images, make_generator(seed=0, epoch=3))
    c = aug.train_batch(images, make_generator(seed=0, epoch=4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_epoch_order_is_a_pure_function_of_seed_and_epoch() -> None:
    order = epoch_order(1000, seed=1, epoch=2)
    assert order.dtype == torch.int64 and torch.equal(order.sort().values, torch.arange(1000))
    assert torch.equal(order, epoch_order(1000, seed=1, epoch=2, device="cpu"))
    assert not torch.equal(order, epoch_order(1000, seed=1, epoch=3))
    assert not torch.equal(order, epoch_order(1000, seed=2, epoch=2))


def test_device_dataset_moves_once_and_batches() -> None:
    data = ArrayDataset(_random_images(10), np.arange(10, dtype=np.int64))
    resident = DeviceDataset.from_arrays(data, "cpu")
    images, labels = resident.batch(torch.tensor([3, 1]))
    assert len(resident) == 10 and images.dtype == torch.uint8
    assert torch.equal(labels, torch.tensor([3, 1]))
    assert torch.equal(images[0], torch.from_numpy(data.images[3]))


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="cutout_length=-1"):
        DeviceAugment(8, -1, "cpu")


@pytest.mark.gpu
def test_cuda_batches_need_no_host_sync_and_match_cpu(tmp_path: Path) -> None:
    images = torch.from_numpy(_random_images(64, seed=5))
    cpu = DeviceAugment(8, 4, "cpu")
    gpu = DeviceAugment(8, 4, "cuda")
    on_gpu = images.cuda()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = gpu.train_batch(on_gpu, make_generator(0, 0, "cuda"))
        evaluated = gpu.eval_batch(on_gpu)
        order = epoch_order(64, 0, 0, device="cuda")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.shape == (64, 3, 8, 8) and order.device.type == "cuda"
    assert torch.allclose(evaluated.cpu(), cpu.eval_batch(images), atol=1e-5)
    assert torch.equal(order.cpu(), epoch_order(64, 0, 0))
