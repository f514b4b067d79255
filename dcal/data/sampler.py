"""Identity-balanced batch sampler (P identities x K images) with twin co-occurrence.

Each batch contains P different identities with K images each, laid out
identity-major: indices ``[k*K, (k+1)*K)`` belong to the batch's k-th
identity. Twin siblings are put in the same batch on purpose, so that
in-batch negatives (PWCA distractors, triplet negatives, verification
pairs) include the hardest cases.

Every rank draws the same global sequence of batches from ``(seed, epoch)``
and keeps every ``num_replicas``-th one, starting at its rank. The ranks
therefore get disjoint shares of that sequence, of equal length, so no rank
waits for a batch that never comes. Within one pass over the identities, no
identity appears on two ranks.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)

# How far ahead in the identity queue the packer looks for a unit that fits
# the batch's free slots. Only tiny data sets have a shorter queue.
_LOOKAHEAD = 256


class IdentityBatchSampler(Sampler[list[int]]):
    """Yield batches of dataset indices: P identities x K images each.

    An epoch walks through the identities in a random order ("passes"),
    starting a new pass when one runs out; each identity appears once per
    pass. When the first member of a twin group is drawn in a pass, the
    whole group joins the same batch with probability ``twin_prob``. A group
    larger than P is split into batches of at most P identities. Otherwise
    the members come up one by one, like any other identity. A twin pair
    therefore shares a batch in about ``twin_prob`` of the passes, plus the
    chance that two independent draws meet. An identity's images
    are drawn without replacement until all were used, then reshuffled. An
    identity with fewer than K images repeats some of them in the same batch
    (sampling with replacement).

    Args:
        labels: identity label of each dataset index.
        identities_per_batch: P, different identities per batch (>= 1; >= 2
            for twins to share a batch).
        images_per_identity: K, images per identity in a batch (>= 1).
        twin_groups: groups of labels that are twins or relatives of each
            other, for example pairs; groups that share a label are merged.
        twin_prob: probability, in [0, 1], that a twin group shares a batch
            in a pass.
        num_replicas: number of DDP processes.
        rank: this process's rank, in [0, num_replicas).
        seed: random seed, the same on every rank.
        batches_per_epoch: batches this rank yields per epoch (its
            ``len()``). None gives about one pass over the images in total:
            ``ceil(len(labels) / (P * K * num_replicas))``.

    Raises:
        ValueError: an argument is out of range, a twin group names a label
            that is not in ``labels``, or there are fewer than P identities.
    """

    def __init__(
        self,
        labels: Sequence[int],
        identities_per_batch: int,
        images_per_identity: int,
        twin_groups: Sequence[Sequence[int]] = (),
        twin_prob: float = 0.5,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        batches_per_epoch: int | None = None,
    ):
        _validate(identities_per_batch, images_per_identity, twin_prob, num_replicas, rank, batches_per_epoch)
        self.P = identities_per_batch
        self.K = images_per_identity
        self.twin_prob = float(twin_prob)
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.epoch = 0

        self.indices_by_label: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            self.indices_by_label.setdefault(int(label), []).append(index)
        self.label_order = sorted(self.indices_by_label)
        if len(self.label_order) < self.P:
            raise ValueError(
                f"only {len(self.label_order)} identities for identities_per_batch={self.P}; "
                "lower identities_per_batch or add identities"
            )
        self.group_of = _merge_groups(twin_groups, self.indices_by_label.keys())
        if self.P == 1 and self.group_of and self.twin_prob > 0:
            logger.warning("identities_per_batch=1 leaves no room for twin siblings; twin_prob has no effect")
        if batches_per_epoch is None:
            batches_per_epoch = max(1, math.ceil(len(labels) / (self.P * self.K * num_replicas)))
        self.batches_per_epoch = batches_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch, which seeds this epoch's order together with ``seed``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        total = self.batches_per_epoch * self.num_replicas
        pools = {label: deque() for label in self.label_order}
        units: deque[list[int]] = deque()
        for number in range(total):
            batch_labels = self._next_batch_labels(units, rng)
            if number % self.num_replicas != self.rank:
                # Other ranks' batches still draw images, so every rank's
                # random stream stays in step.
                self._draw_images(batch_labels, pools, rng)
                continue
            yield self._draw_images(batch_labels, pools, rng)

    def _next_batch_labels(self, units: deque, rng: np.random.Generator) -> list[int]:
        """Take units (an identity, or an identity with a sibling) until P slots are full."""
        chosen: list[int] = []
        while len(chosen) < self.P:
            while len(units) < min(_LOOKAHEAD, len(self.label_order)) + 1:
                units.extend(self._pass_units(rng))
            free = self.P - len(chosen)
            position = self._find_unit(units, chosen, free)
            if position is None:
                # Only sibling pairs that do not fit or overlap the batch are near: split one.
                chosen.append(self._take_one(units, chosen, rng))
                continue
            unit = units[position]
            del units[position]
            chosen.extend(unit)
        return chosen

    def _take_one(self, units: deque, chosen: list[int], rng: np.random.Generator) -> int:
        """Remove and return the first queued identity that is not in the batch yet."""
        while True:
            for i, unit in enumerate(units):
                free = [label for label in unit if label not in chosen]
                if not free:
                    continue
                rest = [label for label in unit if label != free[0]]
                if rest:
                    units[i] = rest
                else:
                    del units[i]
                return free[0]
            # A fresh pass contains every identity, and the batch has fewer than P <= all of them.
            units.extend(self._pass_units(rng))

    def _find_unit(self, units: deque, chosen: list[int], free: int) -> int | None:
        for i in range(min(_LOOKAHEAD, len(units))):
            unit = units[i]
            if len(unit) <= free and not any(label in chosen for label in unit):
                return i
        return None

    def _pass_units(self, rng: np.random.Generator) -> list[list[int]]:
        """Return one pass over all identities as units (identities that go into one batch)."""
        order = [self.label_order[i] for i in rng.permutation(len(self.label_order))]
        used: set[int] = set()
        decided: set[tuple[int, ...]] = set()
        units = []
        for label in order:
            if label in used:
                continue
            used.add(label)
            group = self.group_of.get(label)
            # One draw per group and pass: members of a group drawn apart come up alone.
            together = (group is not None and group not in decided and self.P >= 2
                        and rng.random() < self.twin_prob)
            if group is not None:
                decided.add(group)
            if not together:
                units.append([label])
                continue
            others = [m for m in group if m not in used]
            members = [label] + [others[i] for i in rng.permutation(len(others))]
            used.update(members)
            units.extend(members[k : k + self.P] for k in range(0, len(members), self.P))
        return units

    def _draw_images(self, batch_labels: list[int], pools: dict[int, deque], rng: np.random.Generator) -> list[int]:
        """Return K indices per identity, identity-major."""
        batch = []
        for label in batch_labels:
            indices = self.indices_by_label[label]
            if len(indices) < self.K:
                picked = list(indices) + [indices[i] for i in rng.integers(len(indices), size=self.K - len(indices))]
                batch.extend(picked[i] for i in rng.permutation(self.K))
                continue
            pool = pools[label]
            for _ in range(self.K):
                if not pool:
                    pool.extend(indices[i] for i in rng.permutation(len(indices)))
                batch.append(pool.popleft())
        return batch


def _merge_groups(twin_groups: Sequence[Sequence[int]], known) -> dict[int, tuple[int, ...]]:
    """Map each label in a twin group to its merged group (groups sharing a label are joined)."""
    known = set(known)
    group_of: dict[int, set[int]] = {}
    for group in twin_groups:
        members = {int(m) for m in group}
        unknown = sorted(members - known)
        if unknown:
            raise ValueError(f"twin group {sorted(members)} names labels {unknown} that no dataset index has")
        for m in list(members):
            members |= group_of.get(m, set())
        for m in members:
            group_of[m] = members
    return {label: tuple(sorted(members)) for label, members in group_of.items() if len(members) >= 2}


def _validate(P, K, twin_prob, num_replicas, rank, batches_per_epoch) -> None:
    if P < 1:
        raise ValueError(f"invalid identities_per_batch {P}: expected >= 1")
    if K < 1:
        raise ValueError(f"invalid images_per_identity {K}: expected >= 1")
    if not 0.0 <= twin_prob <= 1.0:
        raise ValueError(f"invalid twin_prob {twin_prob}: expected a probability in [0, 1]")
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"invalid rank {rank} for num_replicas {num_replicas}: expected 0 <= rank < num_replicas")
    if batches_per_epoch is not None and batches_per_epoch < 1:
        raise ValueError(f"invalid batches_per_epoch {batches_per_epoch}: expected >= 1 or None")
