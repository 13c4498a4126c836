"""The reference study's released training recipes, transcribed: what each paper config must resolve to.

tests/test_recipes.py resolves every point of every `experiments/paper_*.py` sweep and compares
it, field by field, with the one row below that matches it, so a change to a paper recipe fails
a test unless this table changes with it. Every row names its sources (SOURCES); a value that
patchscale keeps different on purpose is listed under the row's `departures` with the value
the configs use and why, next to the released value it replaces.

Learning rates are (flag, rule): "batch/512" is the released scripts' rule, rate = flag × global
batch / 512 (DeiT's and Adventurer's main.py, unless --unscale-lr); "absolute" is the rate itself.
Eval crop ratios are given per patch size. A row's `where` selects the sweep points it describes
(a list there means any of its values; "stage" counts the `train.init_from` chain, 1 = no
source). `token_flip` is the Adventurer block's flip rule (`model.mamba2.flip`), None for
attention models; `hflip` is the horizontal-flip probability.
"""

SOURCES = {
    "PS-README": "wangf3014/Patch_Scaling README.md at commit fb8cce8c015d4d9ac04b73d2521751e10e0f5af3: "
                 "'Training', the stage one/two/three commands (8 GPUs × --batch 128, 128, 64; --lr 5e-4, 5e-4, "
                 "1e-5 --unscale-lr; --reprob 0.0; --smoothing 0.0, 0.0, 0.1; --ThreeAugment, --ThreeAugment, "
                 "--aa rand-m9-mstd0.5-inc1; --repeated-aug, --repeated-aug, --no-repeated-aug; "
                 "--epochs 300, 100, 20; --input-size 128, 224, 224; --drop-path 0.1, 0.4, 0.6; "
                 "--weight-decay 0.05, 0.05, 0.1) and "
                 "'Evaluation' (--eval-crop-ratio 1.0; 0.875 recommended for inputs as small as 64×64)",
    "PS-MODEL": "wangf3014/Patch_Scaling models_mamba.py at commit fb8cce8c…: "
                "dpr = [0.0] + linspace(0, drop_path_rate, depth), block i takes dpr[i]; blocks flip when n // 2 == 1",
    "ADV-MAIN": "wangf3014/Adventurer main.py at commit 1ad2b1d040378af6e4a29cb29691e3897a8d8587, argparse defaults: "
                "--warmup-epochs 5, --warmup-lr 1e-6, --min-lr 1e-5, --opt adamw, --opt-betas 0.9 0.999, "
                "no --clip-grad, "
                "--color-jitter 0.3, --mixup 0.8, --cutmix 1.0, --mixup-prob 1.0, --mixup-switch-prob 0.5, "
                "--model-ema-decay 0.99996 (EMA kept, the raw model evaluated), --eval-crop-ratio 0.875; "
                "lr × batch / 512 unless --unscale-lr",
    "DEIT-README": "facebookresearch/deit README_deit.md at commit 94aecfa192b3ce7dbc935dbb07d249888a8665f2, "
                   "'Training': DeiT-S/Ti on 4 GPUs × --batch-size 256, DeiT-B on 2 nodes × 8 GPUs at the "
                   "default 64: "
                   "global batch 1024, every other value main.py's default",
    "DEIT-MAIN": "facebookresearch/deit main.py (stored version 100e3cd2a95d4375166952451b7d8ea59f6b9432), argparse "
                 "defaults: --lr 5e-4 × batch/512, --warmup-epochs 5, --min-lr 1e-5, --epochs 300, --weight-decay "
                 "0.05, --drop-path 0.1, --aa rand-m9-mstd0.5-inc1 (timm then ignores --color-jitter), --reprob 0.25 "
                 "pixel, --smoothing 0.1, --mixup 0.8, --cutmix 1.0, --mixup-switch-prob 0.5, repeated augmentation, "
                 "EMA 0.99996 kept but not evaluated, AdamW with timm's betas (0.9, 0.999), no clipping",
    "REFERENCE": "REFERENCE.md, the project's shared notes on the study's recipes (summarised in docs/reference.md "
                 "and docs/recipes.md); no released command in the repositories above carries these values",
    "PATCHSCALE": "patchscale's own choice where the study released no command; the row says why",
}

ALL_P = (16, 8, 4, 2, 1)
# 0.875 at p = 16 (main.py's --eval-crop-ratio default), 1.0 below (PS-README's eval command, REFERENCE).
EVAL_RULE = {16: 0.875, 8: 1.0, 4: 1.0, 2: 1.0, 1: 1.0}
EVAL_64 = {p: 0.875 for p in ALL_P}  # One view along the 64² sweep (PS-README's advice for 64²).

# DeiT Ti/S/B, the study's ViT recipe (DEIT-README, DEIT-MAIN, REFERENCE).
DEIT = {
    "optimizer": "adamw", "betas": (0.9, 0.999), "lr": (5e-4, "batch/512"), "min_lr": 1e-5, "batch": 1024,
    "warmup_epochs": 5.0, "epochs": 300.0, "steps": None, "weight_decay": 0.05, "drop_path": 0.1,
    "drop_path_schedule": "linear", "crop": "random_resized", "hflip": 0.5, "policy": "rand-m9-mstd0.5-inc1",
    "color_jitter": 0.0, "random_erasing": 0.25, "mixup": (0.8, 1.0, 0.5), "label_smoothing": 0.1,
    "ema_decay": 0.99996, "repeats": 3, "token_flip": None, "grad_clip": 0.0,
}
DEIT_EMA = {"ema_decay": (0.0, "the released script keeps an EMA it never evaluates; the raw model is the "
                               "reported one, so patchscale keeps none (no effect on any reported number)")}
DEIT_SOURCES = ("DEIT-README", "DEIT-MAIN", "REFERENCE")

# DeiT-L/H (REFERENCE: lr flag 2e-4 scaled by batch/512 = 1.6e-3 at 4096, MAE's ViT-L value).
DEIT_L = {**DEIT, "betas": (0.9, 0.95), "lr": (2e-4, "batch/512"), "batch": 4096, "warmup_epochs": 20.0,
          "epochs": 200.0, "weight_decay": 0.3, "drop_path": 0.2}

# Adventurer stage 1 (PS-README stage one, ADV-MAIN defaults, PS-MODEL).
ADV_1 = {
    "optimizer": "adamw", "betas": (0.9, 0.999), "lr": (5e-4, "batch/512"), "min_lr": 1e-5, "batch": 1024,
    "warmup_epochs": 5.0, "epochs": 300.0, "steps": None, "weight_decay": 0.05, "drop_path": 0.1,
    "drop_path_schedule": "released", "crop": "random_resized", "hflip": 0.5, "policy": "three_augment",
    "color_jitter": 0.3, "random_erasing": 0.0, "mixup": (0.8, 1.0, 0.5), "label_smoothing": 0.0,
    "ema_decay": 0.99996, "repeats": 3, "token_flip": "released", "grad_clip": 0.0,
}
ADV_SOURCES = ("PS-README", "ADV-MAIN", "PS-MODEL")

ROWS = [
    # ------------------------------------------------------------------ DeiT-B at 64² (and its extension)
    {"config": "paper_deit_b_64", "where": {}, "input_size": 64, "eval_crop_ratio": EVAL_64, **DEIT,
     "departures": DEIT_EMA, "source": DEIT_SOURCES + ("PS-README",)},
    {"config": "paper_extend", "where": {}, "input_size": 64, "eval_crop_ratio": EVAL_64, **DEIT,
     "departures": DEIT_EMA, "source": DEIT_SOURCES + ("PS-README",),
     "note": "PATCHSCALE: Table 5's extension in the 64² DeiT-B setting, the same recipe"},
    # ------------------------------------------------------------------ input size at a 16×16 grid
    {"config": "paper_input_size", "where": {"data.image_size": 64}, "input_size": 64, **DEIT,
     "eval_crop_ratio": {4: 0.875}, "departures": DEIT_EMA, "source": DEIT_SOURCES + ("PS-README",)},
    {"config": "paper_input_size", "where": {"data.image_size": 128}, "input_size": 128, **DEIT,
     "eval_crop_ratio": {8: 1.0}, "departures": DEIT_EMA, "source": DEIT_SOURCES},
    {"config": "paper_input_size", "where": {"data.image_size": 224}, "input_size": 224, **DEIT,
     "eval_crop_ratio": {14: 1.0}, "departures": DEIT_EMA, "source": DEIT_SOURCES},
    # ------------------------------------------------------------------ model scaling at 224²
    {"config": "paper_model_scaling", "where": {"model.mixer": "attention", "model.size": ["Ti", "S", "B"]},
     "input_size": 224, "eval_crop_ratio": EVAL_RULE, **DEIT, "departures": DEIT_EMA, "source": DEIT_SOURCES},
    {"config": "paper_model_scaling", "where": {"model.mixer": "attention", "model.size": "L"},
     "input_size": 224, "eval_crop_ratio": EVAL_RULE, **DEIT_L, "departures": DEIT_EMA,
     "source": ("REFERENCE", "DEIT-MAIN"),
     "note": "optimizer, rate, batch, epochs, warm-up and drop path from REFERENCE's Large/Huge recipe; the "
             "augmentation, smoothing and eval view are DeiT's (REFERENCE names no others for L)"},
    {"config": "paper_model_scaling", "where": {"model.mixer": "mamba2"}, "input_size": 224,
     "eval_crop_ratio": EVAL_RULE, **ADV_1, "source": ADV_SOURCES + ("REFERENCE", "PATCHSCALE"),
     "note": "PATCHSCALE: Adventurer Ti/S/B/L in one stage at 224² with the stage-1 recipe (REFERENCE: Tiny "
             "trained in one stage at 224² for 300 epochs needs drop path 0.1); not the study's three stages"},
    # ------------------------------------------------------------------ S² (every point the DeiT recipe)
    {"config": "paper_s2", "where": {"model.size": "B", "model.s2_scales": ()}, "input_size": 224,
     "eval_crop_ratio": {16: 0.875, 8: 1.0}, **DEIT, "departures": DEIT_EMA, "source": DEIT_SOURCES},
    {"config": "paper_s2", "where": {"model.size": "B", "model.s2_scales": (1, 2)}, "input_size": 448,
     "eval_crop_ratio": {16: 0.875}, **DEIT, "departures": DEIT_EMA, "source": DEIT_SOURCES + ("PATCHSCALE",),
     "note": "PATCHSCALE: the 448² input only makes the S² tiles; the eval view is the 224² one"},
    {"config": "paper_s2", "where": {"model.size": "L"}, "input_size": 224, "eval_crop_ratio": {16: 0.875},
     **DEIT_L, "source": DEIT_SOURCES + ("PATCHSCALE",),
     "departures": {**DEIT_EMA, **{k: (DEIT[k], "one recipe for every option of the S² comparison "
                                               "(the DeiT-B one), not the Large recipe")
                                   for k in ("betas", "lr", "batch", "warmup_epochs", "epochs", "weight_decay",
                                             "drop_path")}}},
    # ------------------------------------------------------------------ dense prediction (ADE20k)
    {"config": "paper_dense", "where": {"model.head": "classify"}, "input_size": 224,
     "eval_crop_ratio": {16: 0.875, 8: 1.0, 4: 1.0}, **DEIT, "departures": DEIT_EMA, "source": DEIT_SOURCES},
    {"config": "paper_dense", "where": {"model.head": ["dense_linear", "dense_decoder"]}, "input_size": 224,
     **DEIT, "lr": (5e-5, "absolute"), "min_lr": 0.0, "batch": 16, "steps": 160_000, "weight_decay": 0.01,
     "warmup_epochs": 1_500 * 16 / 20_210, "eval_crop_ratio": {16: None, 8: None, 4: None}, "drop_path": 0.1,
     "crop": "resize", "hflip": 0.0, "policy": "none", "random_erasing": 0.0, "mixup": (0.0, 0.0, 0.5),
     "label_smoothing": 0.0, "repeats": 1, "departures": DEIT_EMA, "source": ("REFERENCE", "PATCHSCALE"),
     "note": "REFERENCE: AdamW lr 5e-5, wd 0.01, batch 16, 160k iterations; PATCHSCALE: 1,500 warm-up iterations "
             "(mmsegmentation's), linear decay to 0, no augmentation (the masks would have to move), squashed view"},
    # ------------------------------------------------------------------ Adventurer-B, three stages
    {"config": "paper_adventurer_b", "where": {"stage": 1}, "input_size": 128, **ADV_1,
     "eval_crop_ratio": EVAL_RULE, "source": ADV_SOURCES + ("REFERENCE",)},
    {"config": "paper_adventurer_b", "where": {"stage": 2}, "input_size": 224, **ADV_1, "epochs": 100.0,
     "drop_path": 0.4, "eval_crop_ratio": EVAL_RULE, "source": ADV_SOURCES + ("REFERENCE",)},
    {"config": "paper_adventurer_b", "where": {"stage": 3}, "input_size": 224, **ADV_1, "epochs": 20.0,
     "lr": (1e-5, "absolute"), "batch": 512, "warmup_epochs": 5.0, "weight_decay": 0.1, "drop_path": 0.6,
     "policy": "rand-m9-mstd0.5-inc1", "color_jitter": 0.0, "random_erasing": 0.0, "label_smoothing": 0.1,
     "repeats": 1, "eval_crop_ratio": EVAL_RULE, "source": ADV_SOURCES + ("REFERENCE",),
     "note": "--aa makes timm ignore --color-jitter; 5 warm-up epochs and EMA are main.py defaults"},
]
