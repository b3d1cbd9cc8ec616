"""The data layer (see docs/interfaces.md): datasets on disk and in memory, augmentation, order.

- `synthetic`: learnable synthetic CIFAR-10 / ImageNet written in the real on-disk formats.
- `cifar`: the CIFAR-10 python-pickle reader, `ArrayDataset`, hold-out split, 1/s subsets.
- `augment` (torch): batched CPU/GPU augmentation and the (seed, epoch) data order.
- `imagenet` (torch, torchvision): ImageFolder loaders with a sharded, seeded order.

Only the numpy-only parts are re-exported here, so `import econas_hpc.data` stays cheap; import
`econas_hpc.data.augment` and `econas_hpc.data.imagenet` explicitly.
"""

from __future__ import annotations

from econas_hpc.data.cifar import (
    ArrayDataset,
    load_cifar10,
    load_dataset,
    split_holdout,
    subset_for,
)
from econas_hpc.data.synthetic import write_synthetic_cifar, write_synthetic_imagenet

__all__ = [
    "ArrayDataset",
    "load_cifar10",
    "load_dataset",
    "split_holdout",
    "subset_for",
    "write_synthetic_cifar",
    "write_synthetic_imagenet",
]
