"""Per-site feature equivariance (Zhang 2019, Fig. 5) as a per-trial analysis.

Reference: R. Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019. How
far is the feature map after each pooling site from shifting along with the input?

Definition, for normalised test images ``X`` (the first ``images`` of the test split), a
shift ``Δ = (dy, dx)`` and pooling site ``s`` (every :class:`cnn_jax.pooling.Pool` of the
model, in call order; evaluation mode) with feature map ``F_s`` of cumulative stride ``r_s``:

* ``U`` upsamples a feature map ``r_s``-fold per axis by linear interpolation with circular
  padding: ``out[r i + j] = (1 - j/r) F[i] + (j/r) F[(i + 1) mod h]``, ``j = 0..r-1``. For
  ``r = 2`` this is Zhang's 2x step ``(A, B, C, D) -> (A, (A+B)/2, B, (B+C)/2, C, (C+D)/2,
  D, (D+A)/2)`` (adobe/antialiased-cnns issue #41), and for ``r = 2^k`` it equals ``k`` of
  those steps exactly, so one formula serves every integer factor.
* ``d_s = ||S_Δ U(F_s(X)) - U(F_s(S_Δ X))||² / (||S_Δ U(F_s(X))||² + ||U(F_s(S_Δ X))||²)``,
  the sums running over the images, positions and channels before the ratio (0 when both
  maps are zero): 0 is equivariant, 1 uncorrelated, 2 at most. ``S_Δ`` is the shift
  protocol ``fill`` applied alike to the input and to the upsampled map: ``circular``
  (``np.roll``, Zhang's) or ``zero`` (zero fill, as :func:`cnn_jax.viz.shift.shift_images`).
* The analysis records the mean over sites of ``d_s`` averaged over ``shifts`` seeded random
  shifts, uniform in ``[-max_shift, max_shift]²`` without ``(0, 0)``, the same for every
  trial; the per-site figures go to the trial's ``analysis.json`` (``details``).

The stride ``r_s`` (per axis) is measured, not read off one shape: the model is traced
(abstractly: no weights, no compute) on an input 64 pixels larger per axis, and ``r_s`` is
64 over the growth of the site's map, rounded to the nearest integer. Input size over
feature size would misread VALID convolutions (LeNet-5's second site is 5x5 of a 28x28
input: stride 4, not 5.6). Where that trace fails or the map does not grow (a model that
resizes its input, ``resize_to``), ``r_s`` is the input size over the feature size rounded
to the nearest integer. ``U(F_s)`` has ``r_s h_s`` rows: the input's when the layers keep
sizes up to their strides (SAME padding); otherwise (VALID convolutions: LeNet-5's second
site gives 20x20 of 28x28) the comparison runs on that ``r_s h_s`` grid, shifted on it.

The capture of the sites and the comparison are compiled once per model; the images go in
batches (the last padded, its padding masked out), the upsampled maps a few images at a time.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from cnn_jax.analyses.base import DETAILS, Context, Measure, per_model, register

NAME = "equivariance"
FILLS = ("circular", "zero")
PROBE = 64  # extra pixels per axis of the trace that measures each site's stride
_CHUNK_BYTES = 1 << 28  # upsampled maps (of images of one site) held at a time: ~256 MB


def distance(a, b) -> float:
    """``||a - b||² / (||a||² + ||b||²)`` summed over every element (0 when both are 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    den = float((a * a).sum() + (b * b).sum())
    return float(((a - b) ** 2).sum() / den) if den > 0 else 0.0


def upsample(x, factor):
    """``x: [..., h, w, C]`` upsampled ``factor`` (an int or ``(fh, fw)``) times per axis by
    linear interpolation with circular padding: ``[..., fh h, fw w, C]`` (see the module
    docstring)."""
    import jax.numpy as jnp

    x = jnp.asarray(x)
    for axis, f in zip((-3, -2), (factor, factor) if isinstance(factor, int) else factor):
        if f == 1:
            continue
        # a new axis after `axis` holds the f phases j/f between F[i] and F[i + 1 mod h]
        w = (jnp.arange(f, dtype=x.dtype) / f).reshape((f,) + (1,) * (-axis - 1))
        here = jnp.expand_dims(x, axis)
        nxt = jnp.expand_dims(jnp.roll(x, -1, axis=axis), axis)
        y = here * (1 - w) + nxt * w
        shape = list(x.shape)
        shape[axis] *= f
        x = y.reshape(shape)
    return x


def shift(x, dy, dx, fill: str):
    """``x: [B, H, W, C]`` shifted by ``(dy, dx)`` (down/right positive; traced ints allowed):
    ``out[:, y, x] = x[:, y - dy, x - dx]``, wrapping round (``circular``) or 0 (``zero``)."""
    import jax.numpy as jnp

    out = jnp.roll(x, (dy, dx), axis=(1, 2))
    if fill == "circular":
        return out
    if fill != "zero":
        raise ValueError(f"fill {fill!r}; choose one of: {', '.join(FILLS)}")
    rows, cols = jnp.arange(x.shape[1]) - dy, jnp.arange(x.shape[2]) - dx
    keep = ((rows >= 0) & (rows < x.shape[1]))[:, None] & ((cols >= 0) & (cols < x.shape[2]))
    return jnp.where(keep[None, :, :, None], out, jnp.zeros((), x.dtype))


def _pool_outputs(model, variables, x) -> list[tuple[str, object]]:
    """``[(path, output)]`` of every ``Pool`` call of ``model`` on ``x`` in call order,
    evaluation mode (``variables`` ``None``: freshly initialised, for a trace only)."""
    import jax

    from cnn_jax.pooling import Pool

    order: list[str] = []

    def is_pool(module, method: str) -> bool:
        if isinstance(module, Pool) and method == "__call__":
            order.append("/".join(module.scope.path))
            return True
        return False

    if variables is None:
        state = model.init(jax.random.PRNGKey(0), x, train=False, capture_intermediates=is_pool,
                           mutable=True)
    else:
        _, state = model.apply(variables, x, train=False, capture_intermediates=is_pool,
                               mutable=["intermediates"])
    out, seen = [], {}
    for path in order:
        node = state["intermediates"]
        for part in path.split("/"):
            node = node[part]
        k = seen[path] = seen.get(path, -1) + 1  # a module called twice: path#2
        out.append((path if k == 0 else f"{path}#{k + 1}", node["__call__"][k]))
    return out


def _trace(model, variables, hw, channels: int) -> list[tuple[str, tuple[int, int]]]:
    """``[(path, (h, w))]`` of the pooling sites on a ``hw`` input (abstract: no compute)."""
    import jax
    import jax.numpy as jnp

    names: list[str] = []

    def fn(v, x):
        outs = _pool_outputs(model, v, x)
        names[:] = [n for n, _ in outs]
        return [o for _, o in outs]

    x = jax.ShapeDtypeStruct((1, *hw, channels), jnp.float32)
    shapes = jax.eval_shape(fn, variables, x)
    return [(n, tuple(s.shape[1:3])) for n, s in zip(names, shapes)]


def _stride(size: int, small: int, large: int | None) -> int:
    grown = None if large is None else large - small
    if grown:
        return max(1, round(PROBE / grown))
    return max(1, round(size / small))


def sites(model, variables, shape: Sequence[int]) -> list[tuple[str, tuple[int, int]]]:
    """``[(path, (r_h, r_w))]``: each pooling site of ``model`` on images of ``shape``
    ``(H, W, C)`` with its cumulative stride (measured as the module docstring says)."""
    h, w, c = shape
    found = _trace(model, variables, (h, w), c)
    try:
        large = dict(_trace(model, None, (h + PROBE, w + PROBE), c))
    except Exception:  # noqa: BLE001  (a model that cannot take the larger input: sizes only)
        large = {}
    out = []
    for name, (fh, fw) in found:
        lh, lw = large.get(name, (None, None))
        out.append((name, (_stride(h, fh, lh), _stride(w, fw, lw))))
    return out


def _site_sums(f, g, mask, dy, dx, stride, fill: str):
    """``[Σ ||S U(f) - U(g)||², Σ ||S U(f)||² + ||U(g)||²]`` over the images of ``mask``,
    ``chunk`` images' upsampled maps at a time."""
    import jax
    import jax.numpy as jnp

    size = f.shape[1] * stride[0] * f.shape[2] * stride[1] * f.shape[3] * 4
    chunk = int(max(1, min(f.shape[0], _CHUNK_BYTES // (4 * size))))

    def one(args):
        fi, gi, mi = args
        a = shift(upsample(fi[None].astype(jnp.float32), stride), dy, dx, fill)
        b = upsample(gi[None].astype(jnp.float32), stride)
        return mi * jnp.stack([jnp.sum((a - b) ** 2), jnp.sum(a * a) + jnp.sum(b * b)])

    return jax.lax.map(one, (f, g, mask.astype(jnp.float32)), batch_size=chunk).sum(0)


@per_model
def _programs(model):
    """The compiled ``capture(variables, x) -> [site maps]`` and ``compare(variables, base,
    x, mask, dy, dx) -> f32[S, 2]`` (the sums of :func:`_site_sums`) of one model (one pair
    per configuration, shared by every seed a worker measures)."""
    import jax
    import jax.numpy as jnp

    def maps(v, x):
        return [o for _, o in _pool_outputs(model, v, x)]

    @functools.partial(jax.jit, static_argnames=("strides", "fill"))
    def compare(v, base, x, mask, dy, dx, *, strides, fill):
        moved = maps(v, shift(x, dy, dx, fill))
        return jnp.stack([_site_sums(f, g, mask, dy, dx, r, fill)
                          for f, g, r in zip(base, moved, strides)])

    return jax.jit(maps), compare


def _padded(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    pad = size - len(x)
    mask = np.concatenate([np.ones(len(x), bool), np.zeros(pad, bool)])
    return np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]), mask


def site_distances(model, variables, images, shifts: Sequence[tuple[int, int]],
                   fill: str = "circular", batch_size: int | None = None) -> list[tuple]:
    """``[(path, stride, d_s)]`` per pooling site of ``model`` (a linen module applied as
    ``model.apply(variables, x, train=False)``) on normalised ``images: f32[N, H, W, C]``,
    ``d_s`` averaged over ``shifts`` (``(dy, dx)`` pairs); ``stride`` an int (a pair where
    the axes differ). In batches of ``batch_size`` images (default all; the last padded)."""
    import jax

    images = np.asarray(images, np.float32)
    if not len(shifts) or not len(images):
        raise ValueError("site_distances needs at least one shift and one image")
    found = sites(model, variables, images.shape[1:])
    if not found:
        return []
    capture, compare = _programs(model)
    variables, strides = jax.device_put(variables), tuple(r for _, r in found)
    size = min(batch_size or len(images), len(images))
    sums = np.zeros((len(found), len(shifts), 2))
    for start in range(0, len(images), size):
        x, mask = _padded(images[start:start + size], size)
        base = capture(variables, x)
        for k, (dy, dx) in enumerate(shifts):
            sums[:, k] += np.asarray(compare(variables, base, x, mask, np.int32(dy), np.int32(dx),
                                             strides=strides, fill=fill), np.float64)
    num, den = sums[..., 0], sums[..., 1]
    d = np.divide(num, den, out=np.zeros_like(num), where=den > 0).mean(axis=1)
    return [(name, r[0] if r[0] == r[1] else list(r), float(v))
            for (name, r), v in zip(found, d)]


def random_shifts(count: int, max_shift: int, seed: int = 0) -> list[tuple[int, int]]:
    """``count`` shifts ``(dy, dx)`` uniform in ``[-max_shift, max_shift]²`` without
    ``(0, 0)``, a function of the arguments alone (the same for every trial)."""
    if max_shift < 1:
        raise ValueError(f"max_shift is {max_shift}; a non-zero shift needs at least 1")
    rng = np.random.default_rng([seed, 0xE9A1])
    out: list[tuple[int, int]] = []
    while len(out) < count:
        dy, dx = (int(v) for v in rng.integers(-max_shift, max_shift + 1, size=2))
        if dy or dx:
            out.append((dy, dx))
    return out


def first_images(split, n: int, batch_size: int) -> np.ndarray:
    """The first ``n`` images of ``split`` (all when fewer), normalised as for evaluation."""
    from cnn_jax.data import eval_batches

    out, have = [], 0
    for batch in eval_batches(split, max(1, min(batch_size, n))):
        x = np.asarray(batch["image"])[np.asarray(batch["mask"])][: n - have]
        out.append(x)
        have += len(x)
        if have >= n:
            break
    return np.concatenate(out)


def plot(rows: Sequence[dict], path: str) -> str:
    """Draws the distance per pooling site (x: site 1..S, y: ``d_s``), one line per row
    ``{"label": kind, "sites": [{"name", "stride", "distance"}, ...]}``; saves ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        ys = [s["distance"] for s in row["sites"]]
        ax.plot(range(1, len(ys) + 1), ys, marker="o", label=str(row["label"]))
    longest = max(rows, key=lambda r: len(r["sites"]), default={"sites": []})["sites"]
    ax.set_xticks(range(1, len(longest) + 1))
    ax.set_xticklabels([f"{i}\n×{s['stride']}" for i, s in enumerate(longest, 1)])
    ax.set_xlabel("pooling site (cumulative stride)")
    ax.set_ylabel("feature distance (0: equivariant)")
    ax.set_ylim(bottom=0)
    ax.set_title("Per-site feature equivariance (Zhang 2019)")
    if rows:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _check(options) -> None:
    from cnn_jax.errors import UserError

    if options["fill"] not in FILLS:
        raise UserError(f"analysis {NAME!r}: option 'fill' is {options['fill']!r}; choose one "
                        f"of: {', '.join(FILLS)}")
    for key, least in (("max_shift", 1), ("shifts", 1), ("images", 1)):
        if options[key] < least:
            raise UserError(f"analysis {NAME!r}: option {key!r} is {options[key]}; choose "
                            f"{least} or more")


def _describe(options) -> str:
    return (
        "Feature equivariance per pooling site (Zhang 2019, Fig. 5): each pooling layer's "
        "output is upsampled to the input's resolution (linear interpolation with circular "
        "padding) and compared, as ||shifted features - features of the shifted input||² "
        "over the sum of both squared norms (0: equivariant, 1: uncorrelated), on the first "
        f"{options['images']} test images under {options['shifts']} seeded random "
        f"{options['fill']} shifts of up to ±{options['max_shift']} pixels (the same for "
        "every trial); the measure is the mean over sites. Lower is better."
    )


@register(
    NAME,
    measures=[Measure(NAME, "feature equivariance distance", short="equivariance",
                      higher_is_better=False, fraction=False, reference="Zhang 2019")],
    options={"shifts": 8, "max_shift": 3, "seed": 0, "images": 200, "fill": "circular"},
    describe=_describe,
    check=_check,
)
def equivariance(ctx: Context, shifts: int, max_shift: int, seed: int, images: int,
                 fill: str) -> dict:
    """The mean over pooling sites of the trial's feature distance ``d_s`` (see the module
    docstring); the per-site figures under ``details``. NaN for a model without sites."""
    from cnn_jax.viz.shift import variables_of

    moves = random_shifts(shifts, max_shift, seed)
    x = first_images(ctx.setup.test, images, ctx.batch_size)
    rows = site_distances(ctx.setup.model, variables_of(ctx.state), x, moves, fill,
                          ctx.batch_size)
    value = float(np.mean([d for *_, d in rows])) if rows else float("nan")
    return {NAME: value, DETAILS: {
        "sites": [{"name": n, "stride": r, "distance": d} for n, r, d in rows],
        "shifts": [list(m) for m in moves],
    }}
