"""Recipe regression: every paper config, stage by stage, against the released commands (tests/released_recipes.py).

A change to a paper recipe fails here unless the table changes with it; the table names the
source of each row and lists each deliberate departure with the released value it replaces.
"""

import json
import math

import numpy as np
import pytest

from patchscale import sweep
from patchscale.models import backbone
from tests import released_recipes
from tests.conftest import REPO, run_in_process

CONFIGS = sorted({row["config"] for row in released_recipes.ROWS})
FIELDS = ("optimizer", "betas", "lr", "min_lr", "batch", "warmup_epochs", "epochs", "steps", "weight_decay",
          "drop_path", "drop_path_schedule", "input_size", "crop", "hflip", "policy", "color_jitter",
          "random_erasing", "mixup", "label_smoothing", "ema_decay", "repeats", "eval_crop_ratio", "token_flip",
          "grad_clip")


def test_every_paper_config_is_in_the_table():
    on_disk = sorted(p.stem for p in (REPO / "experiments").glob("paper_*.py") if p.stem != "paper_common")
    assert on_disk == CONFIGS


def _stage(point, by_name) -> int:
    stage, source = 1, point.config.train.init_from
    while source:
        stage, source = stage + 1, by_name[source[1:]].config.train.init_from
    return stage


def _lookup(config, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return tuple(node) if isinstance(node, (list, tuple)) else node


def _matches(where: dict, config, stage: int) -> bool:
    for key, wanted in where.items():
        value = stage if key == "stage" else _lookup(config, key)
        if value not in wanted if isinstance(wanted, list) else value != wanted:
            return False
    return True


def resolved(config) -> dict:
    """A point's recipe in the table's terms; the learning rate as the rate it trains with."""
    t, a, m, d = config.train, config.augment, config.model, config.data
    return {
        "optimizer": "adamw",  # patchscale's only optimizer (optimizer.py).
        "betas": (t.b1, t.b2), "lr": t.learning_rate, "min_lr": t.end_learning_rate, "batch": t.batch_size,
        "warmup_epochs": t.warmup_epochs, "epochs": None if t.steps else t.epochs, "steps": t.steps,
        "weight_decay": t.weight_decay, "drop_path": m.drop_path, "drop_path_schedule": m.drop_path_schedule,
        "input_size": d.image_size, "crop": a.crop, "hflip": a.hflip, "policy": a.policy,
        "color_jitter": a.color_jitter, "random_erasing": a.random_erasing,
        "mixup": (a.mixup_alpha, a.cutmix_alpha, a.mixup_switch_prob), "label_smoothing": t.label_smoothing,
        "ema_decay": t.ema_decay, "repeats": a.repeats, "eval_crop_ratio": d.eval_crop_ratio,
        "token_flip": m.mamba2.flip if m.mixer == "mamba2" else None,
        "grad_clip": t.grad_clip_norm,
    }


def expected(row: dict, field: str, config):
    """What the point must hold for `field`: the released value, or the row's stated departure."""
    value = row["departures"][field][0] if field in row.get("departures", {}) else row[field]
    if field == "lr":
        flag, rule = value
        assert rule in ("batch/512", "absolute"), rule
        return flag * config.train.batch_size / 512 if rule == "batch/512" else flag
    if field == "eval_crop_ratio":
        return value[config.model.patch_size]
    if field == "epochs" and config.train.steps:
        return None
    return value


@pytest.mark.parametrize("name", CONFIGS)
def test_paper_config_resolves_to_the_released_recipe(name):
    points = sweep.expand(str(REPO / "experiments" / f"{name}.py"))
    by_name = {p.name: p for p in points}
    rows = [r for r in released_recipes.ROWS if r["config"] == name]
    used = set()
    for point in points:
        c = point.config
        stage = _stage(point, by_name)
        hits = [i for i, r in enumerate(rows) if _matches(r["where"], c, stage)]
        assert len(hits) == 1, f"{point.name}: {len(hits)} rows of the table describe it"
        row, used = rows[hits[0]], used | set(hits)
        got = resolved(c)
        for field in FIELDS:
            want = expected(row, field, c)
            close = (isinstance(want, float) and isinstance(got[field], (int, float))
                     and math.isclose(got[field], want, rel_tol=1e-12))
            assert close or got[field] == want, f"{point.name} (stage {stage}): {field} is {got[field]!r}, the" \
                                                f" table says {want!r} ({', '.join(row['source'])})"
    assert used == set(range(len(rows))), f"rows of {name} that describe no point: {set(range(len(rows))) - used}"


def test_every_row_names_known_sources_and_explains_its_departures():
    for row in released_recipes.ROWS:
        assert row["source"] and set(row["source"]) <= set(released_recipes.SOURCES), row["config"]
        assert set(FIELDS) <= set(row), (row["config"], set(FIELDS) - set(row))
        for field, (_, why) in row.get("departures", {}).items():
            assert field in FIELDS and len(why) > 20, (row["config"], field)
        if "PATCHSCALE" in row["source"]:
            assert "note" in row or row.get("departures"), row["config"]


def test_learning_rates_carry_their_convention():
    """DeiT-L trains at 2e-4 × 4096/512 = 1.6e-3 (the MAE ViT-L rate); Adventurer's stage 3 at 1e-5 absolute."""
    from experiments import paper_common

    assert paper_common.scaled_lr(2e-4, 4096) == pytest.approx(1.6e-3)
    assert paper_common.DEIT_LARGE["train.learning_rate"] == pytest.approx(1.6e-3)
    assert paper_common.scaled_lr(5e-4, 1024) == pytest.approx(1e-3)
    assert paper_common.ADVENTURER_STAGE_3["train.learning_rate"] == 1e-5


def test_stage_three_config_shows_the_released_values(capsys):
    """`patchscale config experiments/paper_adventurer_b.py --point RUN` for a stage-3 run."""
    points = sweep.expand(str(REPO / "experiments" / "paper_adventurer_b.py"))
    stage3 = points[2].name
    done = run_in_process(capsys, "config", "experiments/paper_adventurer_b.py", "--point", stage3)
    assert done.returncode == 0, done.stderr
    c = json.loads(done.stdout)
    assert (c["train"]["batch_size"], c["train"]["learning_rate"], c["train"]["warmup_epochs"]) == (512, 1e-5, 5.0)
    assert (c["augment"]["random_erasing"], c["augment"]["repeats"], c["train"]["epochs"]) == (0.0, 1, 20.0)
    assert (c["model"]["drop_path"], c["model"]["drop_path_schedule"]) == (0.6, "released")


# ----------------------------------------------------------------------------- drop-path schedules

def _released_rates(rate: float, depth: int) -> list[float]:
    """PS-MODEL's rule, written out: dpr = [0.0] + linspace(0, rate, depth); block i takes dpr[i]."""
    steps = [rate * i / (depth - 1) for i in range(depth)] if depth > 1 else [0.0]
    return ([0.0] + steps)[:depth]


@pytest.mark.parametrize("depth", [1, 2, 12, 24])
def test_drop_path_schedules(depth):
    np.testing.assert_allclose(backbone.drop_path_rates(0.6, depth, "released"), _released_rates(0.6, depth))
    linear = backbone.drop_path_rates(0.6, depth, "linear")
    np.testing.assert_allclose(linear, np.linspace(0, 0.6, depth) if depth > 1 else [0.6])


def test_released_schedule_mean_is_a_quarter_at_rate_0_6_and_depth_12():
    """The issue's numbers: mean drop rate 0.25 (released) against 0.30 (linear) in stages 2–3 of Adventurer-B."""
    assert np.mean(backbone.drop_path_rates(0.6, 12, "released")) == pytest.approx(0.25)
    assert np.mean(backbone.drop_path_rates(0.6, 12, "linear")) == pytest.approx(0.30)
    rates = backbone.drop_path_rates(0.6, 12, "released")
    assert rates[:2] == [0.0, 0.0] and rates[-1] == pytest.approx(0.6 * 10 / 11)


def test_a_model_takes_the_configured_schedule():
    from flax import nnx

    from patchscale.defaults import base_config

    c = base_config()
    c.model.size, c.model.patch_size, c.model.drop_path, c.model.depth = "pico", 8, 0.5, 4
    for schedule in backbone.DROP_PATH_SCHEDULES:
        c.model.drop_path_schedule = schedule
        model = backbone.VisionBackbone(c.model, image_size=16, channels=1, num_classes=10, rngs=nnx.Rngs(0))
        got = [block.drop_path_rate for block in model.blocks]
        np.testing.assert_allclose(got, backbone.drop_path_rates(0.5, 4, schedule))
