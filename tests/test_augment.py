"""Batch mixing (mixup, CutMix) and RandAugment in the data path: each against a reference
computed here (by hand in NumPy, or Pillow called directly), deterministic per (seed,
step), the same on both pipelines, for any number of grain workers, after a resume and
across processes; off, the batches are the views of before; bad values are one line."""

import math

import numpy as np
import pytest
from helpers.batches import same, take
from PIL import Image, ImageEnhance, ImageOps

from cnn_jax import config, data, losses
from cnn_jax.data import augment, mixing, transforms
from cnn_jax.data import randaugment as ra
from cnn_jax.errors import UserError

SPEC = data.DatasetSpec("toy", "toy", 5, (12, 12, 3), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))


def _rgb(h=12, w=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _toy_split(n=24, **opts) -> data.Split:
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (n, *SPEC.shape), dtype=np.uint8)
    return data.Split(images=images, labels=(np.arange(n) % 5).astype(np.int32), spec=SPEC,
                      options=data.Options(**opts))


# -- mixup and CutMix ------------------------------------------------------------------------

def test_mixup_image_and_soft_labels_by_hand():
    x = np.random.default_rng(1).integers(0, 256, (4, 5, 5, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 3], np.int32)
    lam = 0.25  # exact in float32: the reference's float64 rounding is the same
    got = mixing.mix_images(x, x[::-1], mixing.Draw(lam))
    ref = np.rint(lam * x.astype(np.float64) + (1 - lam) * x[::-1].astype(np.float64))
    np.testing.assert_array_equal(got, ref.astype(np.uint8))
    label, probs = mixing.mix_labels(y, y[::-1], lam, 4)
    np.testing.assert_array_equal(label, [3, 2, 1, 0])  # λ < 0.5: the partner's label dominates
    ref_probs = np.zeros((4, 4))
    for i in range(4):
        ref_probs[i, y[i]] += lam
        ref_probs[i, y[3 - i]] += 1 - lam
    np.testing.assert_allclose(probs, ref_probs, atol=1e-7)
    # any λ: within one level of the exact blend; λ >= 0.5 keeps the own label
    got = mixing.mix_images(x, x[::-1], mixing.Draw(0.7))
    exact = 0.7 * x.astype(np.float64) + 0.3 * x[::-1].astype(np.float64)
    assert np.abs(got - exact).max() <= 0.5 + 1e-4
    np.testing.assert_array_equal(mixing.mix_labels(y, y[::-1], 0.7, 4)[0], y)


def test_cutmix_box_is_clipped_and_lambda_is_its_true_area():
    # H=10, W=8, λ=0.64: sides floor(10 * 0.6) = 6, floor(8 * 0.6) = 4 around (1, 7):
    # rows [1-3, 1+3) = [-2, 4) -> [0, 4), columns [7-2, 7+2) = [5, 9) -> [5, 8)
    box = mixing.cut_box(10, 8, 0.64, 1, 7)
    assert box == (0, 5, 4, 8)
    assert mixing.box_lam(box, 10, 8) == pytest.approx(1 - 12 / 80)
    inside = mixing.cut_box(10, 8, 0.64, 5, 4)  # not clipped: 6 x 4 pixels, λ = 1 - 24/80
    assert inside == (2, 2, 8, 6) and mixing.box_lam(inside, 10, 8) == pytest.approx(0.7)
    x = np.random.default_rng(2).integers(0, 256, (3, 10, 8, 1), dtype=np.uint8)
    got = mixing.mix_images(x, x[::-1], mixing.Draw(0.85, box))
    ref = x.copy()
    ref[:, 0:4, 5:8] = x[::-1][:, 0:4, 5:8]
    np.testing.assert_array_equal(got, ref)


def test_mixing_draws_are_a_function_of_seed_and_step():
    m = mixing.Mixing(mixup_alpha=0.4, cutmix_alpha=1.0, mix_prob=0.8, switch_prob=0.3)
    for step in range(6):  # the documented draw order, replayed here
        rng = np.random.default_rng([3, mixing.MIX_STREAM, step])
        d = m.draw(3, step, 16, 16)
        assert d == m.draw(3, step, 16, 16)
        if not rng.random() < 0.8:
            assert d == mixing.Draw(1.0)
            continue
        cut = rng.random() < 0.3
        lam = rng.beta(*(1.0, 1.0) if cut else (0.4, 0.4))
        if cut:
            box = mixing.cut_box(16, 16, lam, int(rng.integers(0, 16)), int(rng.integers(0, 16)))
            assert d == mixing.Draw(mixing.box_lam(box, 16, 16), box)
        else:
            assert d == mixing.Draw(lam)
    draws = [m.draw(0, s, 16, 16) for s in range(3000)]
    mixed = [d for d in draws if d.lam != 1.0 or d.box is not None]
    cut = [d for d in mixed if d.box is not None]
    assert abs(len(mixed) / 3000 - 0.8) < 0.03 and abs(len(cut) / len(mixed) - 0.3) < 0.03
    lams = np.array([d.lam for d in mixed if d.box is None])  # Beta(0.4, 0.4): var 1/7.2
    assert abs(lams.mean() - 0.5) < 0.03 and abs(lams.var() - 1 / 7.2) < 0.02
    only_mixup = mixing.Mixing(mixup_alpha=1.0)
    assert all(only_mixup.draw(0, s, 8, 8).box is None for s in range(50))


def test_soft_label_losses_compose_with_label_smoothing_as_timm():
    import jax.numpy as jnp

    logits = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)
    y, y2, lam, eps = np.array([0, 1, 3]), np.array([2, 1, 0]), 0.3, 0.1
    _, probs = mixing.mix_labels(y.astype(np.int32), y2.astype(np.int32), lam, 4)

    def smooth(lbl):  # timm's one-hot with off = ε / K, on = 1 - ε + ε / K
        t = np.full((3, 4), eps / 4)
        t[np.arange(3), lbl] = 1 - eps + eps / 4
        return t

    target = lam * smooth(y) + (1 - lam) * smooth(y2)  # timm's mixup_target
    logp = np.log(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
    got = losses.softmax_cross_entropy(logits, y, 4, label_smoothing=eps, label_probs=probs)
    np.testing.assert_allclose(got, -(target * logp).sum(-1), rtol=1e-5)
    for name in losses.LOSSES.names():  # one-hot label_probs: the hard-label loss
        fn = losses.LOSSES.get(name)
        onehot = np.eye(4, dtype=np.float32)[y]
        np.testing.assert_allclose(fn(logits, y, 4, 0.1, label_probs=onehot), fn(logits, y, 4, 0.1), rtol=1e-6)


# -- RandAugment -----------------------------------------------------------------------------

def test_magnitude_to_parameter_mapping():
    p = ra.parameter
    assert p("rotate", 9, -1) == pytest.approx(-27) and p("rotate", 30, 1) == pytest.approx(90)
    assert p("solarize", 0, 1) == 256 and p("solarize", 9, 1) == 256 - 230 and p("solarize", 30, 1) == 0
    assert (p("posterize", 0, 1), p("posterize", 9, 1), p("posterize", 10, 1), p("posterize", 30, 1)) == (8, 5, 4, 1)
    for op in ("color", "contrast", "brightness", "sharpness"):
        assert p(op, 9, 1) == pytest.approx(1.81) and p(op, 9, -1) == pytest.approx(0.19)
        assert p(op, 30, -1) == pytest.approx(0.1) and p(op, 0, -1) == 1
    assert p("shear_x", 10, -1) == pytest.approx(-0.3) and p("shear_y", 5, 1) == pytest.approx(0.15)
    assert p("translate_x", 10, 1, (20, 40)) == 18 and p("translate_y", 10, -1, (20, 40)) == -9


@pytest.mark.parametrize("grey", [False, True])
def test_each_operation_against_pillow_or_a_closed_form(grey):
    img = _rgb(10, 12)
    if grey:
        img = img[..., :1]
    im = Image.fromarray(img[..., 0] if grey else img)
    fill = 128 if grey else (128, 128, 128)

    def arr(pil):
        a = np.asarray(pil)
        return a[..., None] if a.ndim == 2 else a

    m, lvl = 9, 0.9
    refs = {
        "identity": img,
        "autocontrast": arr(ImageOps.autocontrast(im)),
        "equalize": arr(ImageOps.equalize(im)),
        "rotate": arr(im.rotate(-27, resample=Image.BILINEAR, fillcolor=fill)),
        "solarize": np.where(img >= 26, 255 - img, img),
        "posterize": img & 0b11111000,
        "color": img if grey else arr(ImageEnhance.Color(im).enhance(1 - 0.9 * lvl)),
        "contrast": arr(ImageEnhance.Contrast(im).enhance(1 - 0.9 * lvl)),
        "brightness": arr(ImageEnhance.Brightness(im).enhance(1 - 0.9 * lvl)),
        "sharpness": arr(ImageEnhance.Sharpness(im).enhance(1 - 0.9 * lvl)),
        "shear_x": arr(im.transform(im.size, Image.AFFINE, (1, -0.27, 0.27 * 5, 0, 1, 0),
                                    resample=Image.BILINEAR, fillcolor=fill)),
        "shear_y": arr(im.transform(im.size, Image.AFFINE, (1, 0, 0, -0.27, 1, 0.27 * 6),
                                    resample=Image.BILINEAR, fillcolor=fill)),
    }
    dx, dy = round(0.45 * lvl * 12), round(0.45 * lvl * 10)  # 5 columns left, 4 rows up
    tx, ty = np.full_like(img, 128), np.full_like(img, 128)
    tx[:, :-dx], ty[:-dy] = img[:, dx:], img[dy:]
    refs["translate_x"], refs["translate_y"] = tx, ty
    assert sorted(refs) == sorted(ra.OPS)
    for op, ref in refs.items():
        got = ra.apply(img, op, m, -1)
        assert got.shape == img.shape and got.dtype == np.uint8, op
        np.testing.assert_array_equal(got, ref, err_msg=op)
    if not grey:  # Pillow's own solarize and posterize agree with the closed forms
        np.testing.assert_array_equal(ra.apply(img, "solarize", m), np.asarray(ImageOps.solarize(im, 26)))
        np.testing.assert_array_equal(ra.apply(img, "posterize", m), np.asarray(ImageOps.posterize(im, 5)))
    sq = _rgb(8, 8)[..., : img.shape[-1]]  # magnitude 30 turns a square a quarter turn
    np.testing.assert_array_equal(ra.apply(sq, "rotate", 30, 1), np.rot90(sq))
    for op in ("rotate", "solarize", "posterize", "color", "shear_x", "translate_y"):
        np.testing.assert_array_equal(ra.apply(img, op, 0, -1), img, err_msg=op)  # m = 0: nothing


def test_randaugment_batch_is_the_views_then_the_drawn_operations():
    split = _toy_split(randaugment_n=3, randaugment_m=12)
    idx = np.arange(8)
    kw = {"seed": 4, "step": 2, "first_row": 0, "total": 8, "crop_padding": 2, "flip": True,
          "spec": SPEC}
    got = augment.train_batch(split.images[idx], split.labels[idx], options=split.options,
                              normalized=False, **kw)["image"]
    views = transforms.train_views(split.images[idx], seed=4, step=2, first_row=0, total=8, crop_size=0,
                                   crop_padding=2, flip=True, mean=SPEC.mean, std=SPEC.std, normalized=False)
    for row in range(8):
        rng = np.random.default_rng([4, augment.RANDAUGMENT_STREAM, 2, row])
        ref = views[row]
        for _ in range(3):
            op = ra.OPS[int(rng.integers(0, 14))]
            ref = ra.apply(ref, op, 12, -1 if rng.random() < 0.5 else 1)
        np.testing.assert_array_equal(got[row], ref)
    normed = augment.train_batch(split.images[idx], split.labels[idx], options=split.options, **kw)
    np.testing.assert_array_equal(normed["image"], transforms.normalize(got, SPEC.mean, SPEC.std))
    assert normed.keys() == {"image", "label"}


# -- the pipelines ---------------------------------------------------------------------------

ON = {"mixup_alpha": 0.4, "cutmix_alpha": 1.0, "mix_prob": 0.9, "randaugment_n": 2,
      "randaugment_m": 10}


def test_in_memory_batches_are_deterministic_resumable_and_mixed_as_defined():
    split = _toy_split(**ON)
    ref = take(data.train_iterator(split, 8, seed=1, crop_padding=1, flip=True), 6)
    same(take(data.train_iterator(split, 8, seed=1, crop_padding=1, flip=True), 6), ref)
    same(take(data.train_iterator(split, 8, seed=1, crop_padding=1, flip=True,
                                    state={"next_index": 3}), 3), ref[3:])
    other = take(data.train_iterator(split, 8, seed=2, crop_padding=1, flip=True), 1)[0]
    assert not np.array_equal(other["image"], ref[0]["image"])
    plain = _toy_split(randaugment_n=2, randaugment_m=10)  # the same views, not mixed
    views = take(data.train_iterator(plain, 8, seed=1, crop_padding=1, flip=True), 6)
    for step, (b, v) in enumerate(zip(ref, views)):
        d = mixing.Mixing(0.4, 1.0, 0.9, 0.5).draw(1, step, 12, 12)
        y = v["label"]
        probs = d.lam * np.eye(5)[y] + (1 - d.lam) * np.eye(5)[y[::-1]]
        np.testing.assert_allclose(b["label_probs"], probs, atol=1e-6)
        np.testing.assert_array_equal(b["label"], y if d.lam >= 0.5 else y[::-1])
        if d.box is not None:  # outside the box: the views themselves
            top, left, bottom, right = d.box
            keep = np.ones((12, 12), bool)
            keep[top:bottom, left:right] = False
            np.testing.assert_array_equal(b["image"][:, keep], v["image"][:, keep])
            np.testing.assert_array_equal(b["image"][:, ~keep], v["image"][::-1][:, ~keep])
        elif d.lam == 1.0:
            np.testing.assert_array_equal(b["image"], v["image"])


def test_with_every_key_off_the_batches_are_the_views_of_before():
    split = _toy_split()
    for step, b in enumerate(take(data.train_iterator(split, 8, seed=5, crop_padding=2, flip=True), 3)):
        idx = data.batching.BatchOrder(len(split), 8, 5)(step)
        ref = transforms.train_views(split.images[idx], seed=5, step=step, first_row=0, total=8,
                                     crop_size=0, crop_padding=2, flip=True, mean=SPEC.mean, std=SPEC.std)
        assert b.keys() == {"image", "label"}
        np.testing.assert_array_equal(b["image"], ref)
        np.testing.assert_array_equal(b["label"], split.labels[idx])


def _streamed(d, **opts):
    s = data.load("digits", "train", d, data.Options(in_memory="false", **opts))
    assert isinstance(s, data.StreamSplit)
    return s


def test_streamed_batches_match_in_memory_for_any_workers_resume_and_processes(data_dir):
    opts = {**ON, "randaugment_m": 7}
    mem = data.load("digits", "train", data_dir, data.Options(in_memory="true", **opts))
    ref = take(data.train_iterator(mem, 16, seed=3, crop_padding=1, flip=True), 5)
    assert ref[0]["label_probs"].shape == (16, 10) and ref[0]["image"].shape == (16, 8, 8, 1)
    assert any(not np.array_equal(b["label_probs"], np.eye(10)[b["label"]]) for b in ref)
    for workers in (0, 2):
        st = take(data.train_iterator(_streamed(data_dir, workers=workers, **opts), 16, seed=3,
                                       crop_padding=1, flip=True), 5)
        same(st, ref)
    resumed = data.train_iterator(_streamed(data_dir, workers=0, **opts), 16, seed=3, crop_padding=1,
                                  flip=True, state={"next_index": 2})
    same(take(resumed, 3), ref[2:])
    halves = [take(data.train_iterator(_streamed(data_dir, workers=0, process_index=p, process_count=2,
                                                  **opts), 16, seed=3, crop_padding=1, flip=True), 5)
              for p in (0, 1)]
    for w, a, b in zip(ref, *halves):  # each process's rows, their partners read from the other's
        for k in w:
            np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), w[k], err_msg=k)


# -- bad values ------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,says", [
    ("data.mixup_alpha", -0.1, "data.mixup_alpha must be a number >= 0 (0 = off), got -0.1"),
    ("data.cutmix_alpha", -1.0, "data.cutmix_alpha must be a number >= 0 (0 = off), got -1.0"),
    ("data.mix_prob", 1.5, "data.mix_prob must be a probability in [0, 1], got 1.5"),
    ("data.mix_switch_prob", -0.2, "data.mix_switch_prob must be a probability in [0, 1], got -0.2"),
    ("data.randaugment_n", -1, "data.randaugment_n must be an integer >= 0 (0 = off), got -1"),
    ("data.randaugment_m", 31, "data.randaugment_m must be in [0, 30] (RandAugment's magnitude scale), got 31"),
    ("data.randaugment_m", -1, "got -1"),
])
def test_bad_values_are_one_line_errors(key, value, says):
    with pytest.raises(UserError) as e:
        config.with_values(config.base_config(), {key: value})
    assert says in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"^data\.") as e:  # the data path's own check
        data.train_iterator(_toy_split(**{key.split(".")[1]: value}), 8, seed=0)
    assert "\n" not in str(e.value)


def test_randaugment_keys_resolve():
    cfg = config.with_values(config.base_config(), {"data.randaugment_n": 2, "data.randaugment_m": 30})
    assert (cfg.data.randaugment_n, cfg.data.randaugment_m) == (2, 30)
    assert data.Options.of(cfg.data).randaugment_n == 2
    assert math.isclose(data.Options.of(cfg.data).mix_prob, 1.0)


def test_the_train_step_takes_a_mixed_batch_s_soft_targets():
    """With ``label_probs`` the loss is the soft-target one; one-hot ``label_probs`` give the
    hard-label step exactly."""
    import functools

    import jax
    import jax.numpy as jnp
    import optax

    from cnn_jax import losses, models
    from cnn_jax.train import state as state_lib
    from cnn_jax.train import step as step_lib

    model = models.create("mlp", num_classes=3, hidden=(4,))
    st = state_lib.create(model, optax.sgd(0.1), (2, 2, 1), seed=0)
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.normal(size=(6, 2, 2, 1)), jnp.float32),
             "label": jnp.asarray([0, 1, 2, 0, 1, 2], jnp.int32)}
    loss = functools.partial(losses.LOSSES.get("softmax_cross_entropy"), num_classes=3)
    step = jax.jit(functools.partial(step_lib.train_step, loss_fn=loss))
    hard, _ = step(st, batch)
    onehot, _ = step(st, {**batch, "label_probs": jax.nn.one_hot(batch["label"], 3)})
    soft_probs = jnp.full((6, 3), 1 / 3)
    soft, sums = step(st, {**batch, "label_probs": soft_probs})
    equal = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), hard.params, onehot.params)
    assert all(jax.tree.leaves(equal))
    differ = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), hard.params, soft.params)
    assert not all(jax.tree.leaves(differ))
    # the loss summed over the batch is the uniform-target cross-entropy, computed by hand
    logits = model.apply({"params": st.params}, batch["image"], train=True)
    want = -jnp.sum(jnp.mean(jax.nn.log_softmax(logits), axis=-1))
    assert float(sums["loss"]) == pytest.approx(float(want), rel=1e-5)
