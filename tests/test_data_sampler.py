"""Identity-balanced P x K batch sampler with twin co-occurrence and DDP shares."""
import itertools

import pytest
import torch
from torch.utils.data import DataLoader

from dcal.data.dataset import FaceImageDataset, collate_skip_bad
from dcal.data.manifest import load_manifest
from dcal.data.sampler import IdentityBatchSampler
from dcal.data.transforms import build_transform


def _labels(num_identities: int, images_each) -> list[int]:
    """Dataset labels: identity k has images_each(k) consecutive indices."""
    labels = []
    for k in range(num_identities):
        labels.extend([k] * images_each(k))
    return labels


def _check_layout(batch: list[int], labels: list[int], P: int, K: int) -> list[int]:
    assert len(batch) == P * K
    batch_labels = [labels[i] for i in batch]
    identities = [batch_labels[k * K] for k in range(P)]
    for k in range(P):
        assert batch_labels[k * K : (k + 1) * K] == [identities[k]] * K
    assert len(set(identities)) == P
    return identities


def test_sampler_pk_layout():
    labels = _labels(30, lambda k: 1 + k % 6)
    sampler = IdentityBatchSampler(labels, identities_per_batch=4, images_per_identity=3, seed=0)
    batches = list(sampler)

    assert len(batches) == len(sampler) == -(-len(labels) // 12)
    for batch in batches:
        _check_layout(batch, labels, 4, 3)


def test_sampler_small_identity_with_replacement():
    labels = _labels(5, lambda k: 1 if k == 0 else 4)
    sampler = IdentityBatchSampler(labels, 5, 4, batches_per_epoch=3)

    for batch in sampler:
        _check_layout(batch, labels, 5, 4)
        assert [i for i in batch if labels[i] == 0] == [0, 0, 0, 0]


def test_sampler_uses_all_images_of_identity():
    labels = _labels(4, lambda k: 6)
    sampler = IdentityBatchSampler(labels, 2, 3, batches_per_epoch=4)

    seen = [i for batch in sampler for i in batch]

    assert sorted(seen) == list(range(24))


def _pair_rate(twin_prob: float, epochs: int = 30) -> float:
    """Fraction of (epoch, twin pair) where the pair shares a batch; one epoch is one pass."""
    num_identities, P = 200, 4
    labels = _labels(num_identities, lambda k: 2)
    pairs = [(2 * k, 2 * k + 1) for k in range(20)]
    sampler = IdentityBatchSampler(labels, P, 2, twin_groups=pairs, twin_prob=twin_prob, seed=5,
                                   batches_per_epoch=num_identities // P)
    together = 0
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in sampler:
            present = {labels[i] for i in batch}
            together += sum(1 for a, b in pairs if a in present and b in present)
    return together / (epochs * len(pairs))


@pytest.mark.parametrize("twin_prob", [0.0, 0.5, 1.0])
def test_sampler_twin_rate(twin_prob):
    rate = _pair_rate(twin_prob)

    # Unpaired twins still meet by chance, about P / identities = 2% of the time.
    assert twin_prob - 0.05 <= rate <= twin_prob + 0.08


def test_sampler_twin_group_together():
    """Pairs that share a member (a parent listed with each child) form one group."""
    labels = _labels(12, lambda k: 2)
    sampler = IdentityBatchSampler(labels, 3, 2, twin_groups=[[0, 1], [1, 2]], twin_prob=1.0, batches_per_epoch=4)

    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in sampler:
            present = {labels[i] for i in batch}
            if present & {0, 1, 2}:
                assert present >= {0, 1, 2}


def test_sampler_group_larger_than_batch():
    labels = _labels(12, lambda k: 2)
    sampler = IdentityBatchSampler(labels, 2, 2, twin_groups=[[0, 1, 2, 3]], twin_prob=1.0, batches_per_epoch=6)

    for batch in sampler:
        present = {labels[i] for i in batch}
        assert len(present & {0, 1, 2, 3}) in (0, 2)


def test_sampler_ddp_disjoint_shares():
    labels = _labels(64, lambda k: 2)
    ranks = [IdentityBatchSampler(labels, 4, 2, num_replicas=2, rank=r, seed=9, batches_per_epoch=8) for r in range(2)]
    single = IdentityBatchSampler(labels, 4, 2, seed=9, batches_per_epoch=16)

    shares = [list(sampler) for sampler in ranks]
    identities = [{labels[i] for batch in share for i in batch} for share in shares]

    assert len(shares[0]) == len(shares[1]) == 8
    assert not identities[0] & identities[1]
    assert identities[0] | identities[1] == set(range(64))
    interleaved = [batch for pair in zip(*shares) for batch in pair]
    assert interleaved == list(single)


def test_sampler_ddp_equal_length_default():
    labels = _labels(7, lambda k: 3)  # 21 images
    lengths = [len(IdentityBatchSampler(labels, 2, 2, num_replicas=3, rank=r)) for r in range(3)]

    assert lengths == [2, 2, 2]
    assert [len(list(IdentityBatchSampler(labels, 2, 2, num_replicas=3, rank=r))) for r in range(3)] == lengths


def test_sampler_deterministic_and_epoch_changes_order():
    labels = _labels(40, lambda k: 3)
    twins = [[0, 1], [2, 3]]

    def run(seed, epoch):
        sampler = IdentityBatchSampler(labels, 4, 2, twin_groups=twins, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert run(0, 0) == run(0, 0)
    assert run(0, 1) == run(0, 1)
    assert run(0, 1) != run(0, 0)
    assert run(1, 0) != run(0, 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"identities_per_batch": 11}, "only 10 identities"),
        ({"images_per_identity": 0}, "images_per_identity"),
        ({"twin_prob": 1.5}, "twin_prob"),
        ({"rank": 2, "num_replicas": 2}, "rank"),
        ({"twin_groups": [[0, 99]]}, "99"),
        ({"batches_per_epoch": 0}, "batches_per_epoch"),
    ],
)
def test_sampler_invalid_args(kwargs, match):
    args = {"labels": _labels(10, lambda k: 2), "identities_per_batch": 2, "images_per_identity": 2, **kwargs}

    with pytest.raises(ValueError, match=match):
        IdentityBatchSampler(**args)


def test_sampler_with_dataloader_real_faces(shared_data):
    """Three ORL identities through the dataset, sampler and collate function used in training."""
    manifest = load_manifest(shared_data / "att_faces", identities=["s1", "s2", "s3"])
    dataset = FaceImageDataset(manifest.samples(), build_transform(32, (0.5,) * 3, (0.5,) * 3, train=True))
    sampler = IdentityBatchSampler(dataset.labels, 2, 2, seed=0, batches_per_epoch=2)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_skip_bad)

    batches = list(loader)

    assert len(batches) == 2
    for images, labels, indices, num_bad in batches:
        assert images.shape == (4, 3, 32, 32)
        assert num_bad == 0
        assert labels[0] == labels[1]
        assert labels[2] == labels[3]
        assert labels[0] != labels[2]
        assert torch.equal(labels, torch.tensor([dataset.labels[i] for i in indices]))
    assert list(itertools.chain.from_iterable(b[2].tolist() for b in batches)) == [i for b in sampler for i in b]
