"""The base config every experiment starts from: every key a run can take, with its default.

Experiment files (`experiments/*.py`) call `base_config()` and change what they need; an
override on the command line must name a key that exists here.
"""

from ml_collections import ConfigDict
from ml_collections.config_dict import placeholder

from patchscale import mesh_axes


def base_config() -> ConfigDict:
    c = ConfigDict()
    c.seed = 0

    c.model = ConfigDict()
    c.model.size = "mu"  # Named shape (models/sizes.py); width/depth/heads/mlp_dim below override it.
    c.model.width = placeholder(int)
    c.model.depth = placeholder(int)
    c.model.heads = placeholder(int)
    c.model.mlp_dim = placeholder(int)
    c.model.mixer = "attention"  # Any registered token mixer: attention | mamba2 | linear_attention | …
    c.model.baseline = "none"  # none (the backbone) | linear | mlp: a pixel baseline instead (models/baselines.py)
    c.model.baseline_hidden = 512  # Hidden units of the mlp baseline.
    c.model.patch_size = 4
    # "By extending" (the study's Table 5): interpolate the patch-embedding grid bilinearly to
    # this many times the tokens per side, the sequence length of patch p/f with no new pixels.
    c.model.extend_tokens = 1
    # S² multi-scale features (models/multiscale.py), e.g. (1, 2): the backbone runs on base-sized
    # tiles of the input at each scale (base = data.image_size / largest scale); () turns it off.
    c.model.s2_scales = ()
    # classify (a linear head on the pooled features) | dense_linear (the study's decoder-free
    # per-pixel head) | dense_decoder (a small conv decoder): dense heads train the per-pixel task
    # of segmentation.py (pixel classes from data.pixel_threshold) and report mIoU.
    c.model.head = "classify"
    c.model.decoder_width = 64  # Channels of the dense_decoder head.
    c.model.pool = "cls"  # cls | gap
    c.model.cls_position = "first"  # first (DeiT) | last (Adventurer)
    c.model.posemb = "learned"  # learned | sincos2d | none
    c.model.norm = "layernorm"  # layernorm (DeiT, eps 1e-6) | rmsnorm (Adventurer, eps 1e-5)
    c.model.channel_mixer = "mlp"  # mlp (GELU) | swiglu
    c.model.patch_embed_init = "torch"  # torch (PyTorch conv default, DeiT) | lecun_normal (Adventurer)
    c.model.drop_path = 0.0
    # Per-block drop-path rates (models/backbone.py: drop_path_rates): linear (0 … rate, DeiT's rule,
    # the intended one) | released (the released Adventurer code's off-by-one, used by the paper configs).
    c.model.drop_path_schedule = "linear"
    c.model.dtype = "auto"  # auto (float32 on CPU, bfloat16 on accelerators) | float32 | bfloat16
    c.model.residual_dtype = "float32"  # float32 (the reference: autocast) | compute (the compute dtype)
    # What each block keeps for the backward pass: none (everything) | full (only its input) |
    # dots (also matmul outputs) | names (also the projections tagged in backbone.SAVED_NAMES).
    c.model.remat = "none"
    # Run the blocks as one lax.scan over stacked parameters (layer_stack/…) instead of unrolled
    # (blocks/<i>/…): same numbers, compile time and memory independent of depth (backbone.py).
    c.model.scan_layers = False
    # Long sequences: run the parts of a block that allow it (the Mamba-2 layer, carrying its
    # state; the channel mixer) this many tokens at a time, each piece rematerialised, so the
    # backward pass holds one piece's internals instead of the whole sequence's. 0 = off.
    c.model.token_segment = 0
    # auto (also when None), never a path that refuses the shape: Pallas flash on TPUs, cuDNN on GPUs
    # in 16 bits from 128 tokens, else dense (einsum on CPU, xla elsewhere) while a batch's logits stay
    # under 2**28 and chunked above (cuDNN where it applies); no fused kernel when mesh.sequence splits
    # the tokens (mixers/attention.py). Or force "xla" | "einsum" (dense) | "cudnn" | "pallas" | "chunked".
    c.model.attention_impl = placeholder(str)
    c.model.attention_chunk = 1024  # Queries per block of the "chunked" implementation (long sequences).
    c.model.mamba2 = ConfigDict()
    c.model.mamba2.d_state = 64
    c.model.mamba2.expand = 2
    c.model.mamba2.headdim = 64
    c.model.mamba2.groups = 1
    c.model.mamba2.conv_width = 4
    c.model.mamba2.chunk_size = 0  # Q, the SSD's block size; 0 = auto (mixers/mamba2.py: chunk_size).
    c.model.mamba2.flip = "alternate"  # alternate (intended: every other block) | released (blocks 2, 3) | none
    c.model.mamba2.heading_average = True

    c.data = ConfigDict()
    c.data.name = "mnist"  # The embedded default; any prepared TFDS image-classification dataset works.
    c.data.data_dir = placeholder(str)  # TFDS data dir; None means TFDS's default (~/tensorflow_datasets).
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.val_split = placeholder(str)  # Also evaluated at every evaluation when set (e.g. "validation").
    c.data.train_examples = placeholder(int)  # Use only the first N training examples.
    c.data.eval_examples = placeholder(int)  # Evaluate on the first N held-out examples (None: all).
    c.data.image_size = placeholder(int)  # Resize to this size (None: the dataset's own).
    c.data.pixel_threshold = 128  # Dense heads: pixels at least this bright (0-255) are their image's class, else background.
    # Dense heads on a segmentation dataset (e.g. ADE20k, TFDS scene_parse150): the feature holding
    # each image's label mask (its first channel; resized with the image, nearest neighbour), read
    # instead of deriving labels from data.pixel_threshold. Pixel class = stored value +
    # mask_offset; values outside 0..mask_classes-1 are ignored (ADE20k: offset -1 drops "other").
    c.data.mask_feature = placeholder(str)
    c.data.mask_classes = 0
    c.data.mask_offset = 0
    c.data.random_shift = 0  # Training augmentation: random translation by up to this many pixels.
    c.data.interpolation = "bilinear"  # bilinear | bicubic (the reference recipes): every resize and crop.
    # Evaluation view: None squashes to the input size; a ratio resizes the shorter side to
    # ⌊size / ratio⌋ and centre-crops, with torchvision's rounding (DeiT: 0.875; docs/recipes.md).
    c.data.eval_crop_ratio = placeholder(float)
    c.data.in_memory = False  # Read and resize each split once, then serve it from memory (small datasets).
    c.data.worker_threads = 2
    c.data.prefetch = 4

    # Training augmentation (docs/data.md). Per example on the host: crop, flip, policy, jitter;
    # per batch on device: random erasing, Mixup/CutMix with soft targets.
    c.augment = ConfigDict()
    c.augment.crop = "resize"  # resize (squash to the input size) | random_resized (torchvision RandomResizedCrop)
    c.augment.crop_scale = (0.08, 1.0)  # random_resized: area fraction range.
    c.augment.crop_ratio = (3 / 4, 4 / 3)  # random_resized: aspect-ratio range.
    c.augment.hflip = 0.0  # Probability of a horizontal flip.
    c.augment.policy = "none"  # none | three_augment (DeiT III) | a timm RandAugment spec, e.g. rand-m9-mstd0.5-inc1
    c.augment.color_jitter = 0.0  # Brightness/contrast/saturation strength (0.3 with three_augment).
    c.augment.random_erasing = 0.0  # Probability per image of erasing one box with normal noise (pixel mode).
    c.augment.repeats = 1  # Repeated augmentation: each example this many times in a row (DeiT: 3).
    c.augment.mixup_alpha = 0.0  # Beta(α, α) mixing of image pairs; 0 turns Mixup off.
    c.augment.cutmix_alpha = 0.0  # Beta(α, α) box pasting; 0 turns CutMix off.
    c.augment.mixup_switch_prob = 0.5  # With both on: probability that a batch uses CutMix instead of Mixup.

    c.train = ConfigDict()
    c.train.batch_size = 128
    c.train.eval_batch_size = 1000
    c.train.epochs = 6.0
    c.train.steps = placeholder(int)  # Overrides epochs when set.
    c.train.learning_rate = 1e-3
    c.train.end_learning_rate = 1e-5
    c.train.schedule = "cosine"  # cosine | wsd (warmup-stable-decay; needed for train.budgets)
    c.train.cooldown_fraction = 0.2  # wsd: the last fraction of every trajectory anneals linearly.
    # wsd: fractions of the run (< 1) at which a cooldown branch is trained and evaluated, giving
    # the losses of shorter budgets from one run; the run's own end is always the last budget.
    c.train.budgets = ()
    c.train.warmup_epochs = 0.5
    c.train.weight_decay = 0.05
    c.train.b1 = 0.9
    c.train.b2 = 0.999
    c.train.grad_clip_norm = 1.0  # 0 turns clipping off.
    c.train.label_smoothing = 0.1
    # Start from the newest checkpoint of another run (a stage of a multi-stage recipe): position
    # table and patch embedding are resized to this model's grid and patch (init_from.py).
    c.train.init_from = placeholder(str)
    c.train.ema_decay = 0.0  # Exponential moving average of the parameters (saved, evaluated too); 0 = off.
    c.train.log_every = 50
    c.train.eval_every = 0  # Steps between evaluations; 0 evaluates only at the end.
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 2

    c.mesh = ConfigDict()  # Device counts per mesh axis; their product is the number of devices.
    c.mesh.data = -1  # -1: all remaining devices.
    c.mesh.fsdp = 1  # Parameters and optimizer state sharded (all-gathered per layer), batch split too.
    c.mesh.sequence = 1  # The token axis of activations split (long sequences).
    c.mesh.tensor = 1  # MLP hidden units and heads split (Megatron-style tensor parallelism).
    # Logical axis → mesh axes ("a,b"; "" replicates). Names are listed in partitioning.py.
    c.mesh.rules = ConfigDict(dict(mesh_axes.DEFAULT_RULES))
    return c
