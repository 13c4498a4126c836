"""`RunSpec`: the facts of one run, derived once from its config and the dataset's metadata.

Training, the sweep's dry run and ETA, the benchmark, the preflight and the data preview all
need the same few numbers (input size, channels, head classes, steps, warm-up, cooldown
branches, tokens and FLOPs per image). Working them out in each place let them drift apart;
here they are computed in one function and frozen. The step arithmetic itself lives beside the
schedule (optimizer.py), which the config's schedule check also uses. Nothing is read but
the dataset's metadata (no examples), so a spec is cheap enough for a dry run of a whole sweep.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from patchscale import optimizer, segmentation
from patchscale.data import datasets
from patchscale.models import dense_heads, flops


@dataclasses.dataclass(frozen=True)
class RunSpec:
    config: Any  # The run's validated ml_collections.ConfigDict (not copied: treat it as read-only).
    dataset: datasets.DatasetInfo
    image_size: int  # The model's input size: data.image_size, else the dataset's.
    channels: int
    head_classes: int  # The head's outputs: image classes, or pixel classes (segmentation.head_classes).
    train_examples: int  # 0 when the split's size is not known yet (dataset not prepared).
    total_steps: int
    warmup_steps: int
    branches: tuple[tuple[int, int], ...]  # WSD cooldown branches: (step it leaves the run, its last step).
    tokens_per_image: int  # Tokens the mixers process per image (0: a pixel baseline).
    train_flops_per_image: float  # Analytic forward + backward (models/flops.py).

    @classmethod
    def from_config(cls, config, train_examples: int | None = None) -> RunSpec:
        """The spec of `config`; `train_examples` overrides the count from metadata.

        The trainer passes the length of the split it opened; everyone else uses the metadata
        (`data.train_examples`, else the split's size), which is the same number once prepared.
        """
        d, t, m = config.data, config.train, config.model
        info = datasets.describe(d.name, d.data_dir, d.mask_feature)
        if train_examples is None:
            train_examples = d.train_examples or info.splits.get(d.train_split, 0)
        image_size = d.image_size or info.image_size
        classes = segmentation.head_classes(config, info.num_classes)
        total = optimizer.total_steps(t, train_examples)
        branches = optimizer.cooldown_branches(t, total)
        return cls(config=config, dataset=info, image_size=image_size, channels=info.channels,
                   head_classes=classes, train_examples=train_examples, total_steps=total,
                   warmup_steps=optimizer.warmup_steps(t, train_examples),
                   branches=tuple(sorted(branches.items())),
                   tokens_per_image=flops.tokens_per_image(m, image_size),
                   train_flops_per_image=flops.train_flops_per_image(m, image_size, info.channels, classes))

    @property
    def dense(self) -> bool:
        """A per-pixel head: targets and metrics per pixel (segmentation.py)."""
        return dense_heads.is_dense(self.config.model.head)

    @property
    def cooldown_branches(self) -> dict[int, int]:
        """Branch start → its last step (optimizer.cooldown_branches)."""
        return dict(self.branches)

    @property
    def train_flops_total(self) -> float:
        """Analytic training FLOPs of the whole run (cooldown branches not counted)."""
        return self.train_flops_per_image * self.total_steps * self.config.train.batch_size

    def with_steps(self, total_steps: int, warmup_steps: int) -> RunSpec:
        """The same run with a made-up schedule length: for tests and benchmarks that run a few steps."""
        return dataclasses.replace(self, total_steps=total_steps, warmup_steps=warmup_steps, branches=())
