"""The defaults of every config key (:func:`base_config`) and the named choices of a few."""

from __future__ import annotations

import ml_collections

# ``train.on_nan``: what a non-finite (NaN/Inf) loss does.
ON_NAN_STOP, ON_NAN_SKIP, ON_NAN_LOWER_LR = "stop", "skip", "lower_lr"
ON_NAN = (ON_NAN_STOP, ON_NAN_SKIP, ON_NAN_LOWER_LR)
# ``parallel.mode``: how the per-device step runs (see cnn_jax.train.parallel).
PARALLEL_MODES = ("auto", "single", "pmap", "sharded")
# ``train.checkpoint_evals``: which evaluations save a checkpoint.
CHECKPOINT_EVALS = ("all", "best", "end")
# ``train.select_weights``: the raw weights or their moving average (train.ema_decay > 0).
WEIGHTS = ("raw", "ema")

# Keys that may differ when resuming a workdir (they do not change the result).
RESUME_SAFE_KEYS = ("data.data_dir", "data.prefetch", "train.log_every_steps", "parallel.mode",
                    "data.workers", "data.in_memory", "data.max_memory_gb", "train.checkpoint_evals")


def base_config() -> ml_collections.ConfigDict:
    """Every key the library reads, with defaults. Experiments change what they study."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Model: `name` plus that model's options (filled in by `resolve_model_options`).
    c.model = ml_collections.ConfigDict()
    c.model.name = "lenet5"

    c.data = _data()
    c.optim = _optim()
    c.train = _train()

    c.parallel = ml_collections.ConfigDict()
    c.parallel.mode = "auto"  # auto | single | pmap | sharded (see cnn_jax.train.parallel)
    return c


def _data() -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    d.name = "mnist5k"
    d.data_dir = ""  # "" -> $CNN_JAX_DATA_DIR, $TFDS_DATA_DIR or ~/tensorflow_datasets
    d.batch_size = 128
    d.eval_batch_size = 500
    d.crop_padding = 0  # padded random crop (pixels of zero padding); 0 = off
    d.flip = False  # random horizontal flip
    d.train_split = "train"  # tfds split expressions, e.g. "train[:90%]"
    d.test_split = "test"
    # Validation for model selection: a stratified, seeded hold-out of the training split
    # (the same for every trial seed), a fraction in (0, 1) or a whole count; 0 = none.
    d.validation = 0.1
    d.prefetch = 2  # batches put on devices ahead of the step (0: synchronous)
    # Input pipeline (cnn_jax.data): decoded into host memory, or streamed (read, decoded and
    # augmented per batch in grain worker processes); both give the same batches.
    d.in_memory = "auto"  # auto (streams a split above max_memory_gb) | true | false
    d.max_memory_gb = 4.0  # the most host memory (10^9 bytes) one decoded split may take
    d.workers = 2  # grain processes decoding a streamed split (0: in the training process)
    d.crop_size = 0  # > 0: ImageNet-style views (random-resized crop; resize + centre crop)
    d.image_size = 0  # > 0: images resized to this square when decoded (shorter side)
    d.path = ""  # data.name=image_folder: DIR of class subfolders (or DIR/train, ...)
    d.skip_bad_images = False  # skip (and count) images that do not decode
    # Batch mixing (timm's definitions): mixup and CutMix with lambda ~ Beta(alpha, alpha)
    # per batch (0 = off), applied with probability mix_prob, CutMix instead of mixup with
    # probability mix_switch_prob when both are on.
    d.mixup_alpha = 0.0
    d.cutmix_alpha = 0.0
    d.mix_prob = 1.0
    d.mix_switch_prob = 0.5
    # RandAugment (Cubuk et al. 2020): randaugment_n operations at magnitude randaugment_m
    # (0-30, the published scale); n = 0 is off.
    d.randaugment_n = 0
    d.randaugment_m = 9
    return d


def _optim() -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    o.name = "adam"
    o.learning_rate = 1e-3
    o.schedule = "constant"
    o.warmup_steps = 0
    o.warmup_epochs = 0
    o.boundaries = (0.5, 0.75)  # piecewise: fractions of training (or step counts)
    o.scales = (0.1, 0.1)
    o.momentum = 0.9
    o.b1 = 0.9
    o.b2 = 0.999
    o.eps = 1e-8
    o.rms_decay = 0.9
    o.weight_decay = 0.0
    o.grad_clip_norm = 0.0  # 0 = off
    return o


def _train() -> ml_collections.ConfigDict:
    t = ml_collections.ConfigDict()
    t.epochs = 10
    t.steps = 0  # > 0: train this many steps instead of `epochs`
    t.loss = "softmax_cross_entropy"
    t.label_smoothing = 0.0
    t.eval_every_epochs = 1
    t.checkpoint_every_steps = 0  # 0 = at every evaluation only
    # Which evaluations checkpoint: "all"; "best" (those that improve validation accuracy,
    # and the last step); or "end" (the last step only; the best state waits in memory and is
    # saved with the next checkpoint): fewer saves for short runs; a resume is exact either way.
    t.checkpoint_evals = "all"
    t.log_every_steps = 20
    t.keep_latest = 2
    t.keep_best = 1  # best checkpoints by validation accuracy (needs data.validation)
    # Stop when validation accuracy has not improved for this many evaluations; 0 = off.
    t.early_stopping_patience = 0
    # A non-finite (NaN/Inf) loss: "stop" (error naming the step, last good checkpoint
    # kept), "skip" (that step changes nothing) or "lower_lr" (back to the last good
    # checkpoint with the learning rate times nan_lr_factor, at most nan_max_retries times).
    t.on_nan = ON_NAN_STOP
    t.nan_lr_factor = 0.1
    t.nan_max_retries = 3
    # An exponential moving average of the parameters (and BatchNorm statistics), kept in
    # the train state and its checkpoints and evaluated beside the raw weights; 0 = off.
    t.ema_decay = 0.0
    t.ema_warmup = False  # decay min(ema_decay, (1 + n) / (10 + n)) at update n
    # Which weights selection by validation accuracy, early stopping and the summary's test
    # and validation figures use: "raw" or "ema" (needs ema_decay > 0); both are reported.
    t.select_weights = "raw"
    # Micro-batches per optimizer step (the step of the k-times larger batch); 1 = off.
    t.grad_accum_steps = 1
    # "A:B": write a jax.profiler trace of steps A to B (TensorBoard's profile plugin); "" = off.
    t.profile_steps = ""
    return t
