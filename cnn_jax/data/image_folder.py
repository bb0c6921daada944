"""Your own images: ``data.name=image_folder data.path=DIR``.

``DIR`` holds one subfolder of images per class (``DIR/cat/*.jpg``, ``DIR/dog/*.png``), or
``DIR/train``, ``DIR/validation`` and ``DIR/test``, each of class subfolders (``train``
required; ``validation`` becomes the validation split, else ``data.validation`` holds one
out of train; without ``test``, a stratified seeded hold-out of 20 % of each class,
``numpy.random.default_rng(0)``, is the test split). Images are PNG or JPEG (anything
Pillow reads), grey or RGB, all of one size unless ``data.image_size`` resizes them
(shorter side, centre crop).

The folder is converted once into a local tfds ArrayRecord dataset in the data directory
(images kept as their own bytes, or PNG when resized or converted to grey/RGB; no
TensorFlow), named after the folder's absolute path and its content (file names, sizes and
modification times, ``data.image_size``, ``data.skip_bad_images``): a changed folder is
converted again and the older conversion removed. From then on it is read exactly like
every other dataset (both pipelines, normalisation statistics computed on its training
split, full evaluation of its test split).

Every check runs before anything is written; each failure is one line (a
:class:`~cnn_jax.errors.UserError`): the folder is missing or empty, has fewer than two
classes, a class without images, a file that is not a readable image (skipped and counted
with ``data.skip_bad_images=true``), images of several sizes without ``data.image_size``,
or both grey and colour images.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil

import numpy as np
from PIL import Image

from cnn_jax.data.registry import DatasetSpec, Options, register
from cnn_jax.data.transforms import resize_square
from cnn_jax.data.writer import encode as encode_image
from cnn_jax.data.writer import write_tfds
from cnn_jax.errors import UserError

SPLIT_NAMES = ("train", "validation", "test")
TEST_FRACTION = 0.2
TEST_SEED = 0
META = "cnn_jax_image_folder.json"
_FORMAT = 1  # bump when the conversion changes
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


@dataclasses.dataclass
class _File:
    path: str  # absolute
    rel: str  # relative to the folder (messages, the content key)
    label: int
    split: str  # train / validation / test, from the layout


def _visible(names):
    return sorted(n for n in names if not n.startswith("."))


def _class_files(split_dir: str, what: str) -> tuple[list[str], dict[str, list[str]]]:
    classes = [d for d in _visible(os.listdir(split_dir)) if os.path.isdir(os.path.join(split_dir, d))]
    files = {}
    for c in classes:
        found = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(split_dir, c)):
            dirnames[:] = _visible(dirnames)
            found.extend(os.path.join(dirpath, f) for f in _visible(filenames))
        if not found:
            raise UserError(f"class folder {os.path.join(split_dir, c)!r} of {what} has no images; "
                            "add images or remove the folder")
        files[c] = sorted(found)
    return classes, files


def scan(path: str) -> tuple[list[str], list[_File]]:
    """``(class_names, files)`` of an image folder (no image is opened)."""
    if not path:
        raise UserError("data.name=image_folder needs data.path=DIR, a folder of class subfolders "
                        "of images (or of train/validation/test folders of them)")
    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(root):
        raise UserError(f"image folder {path!r} does not exist" if not os.path.exists(root)
                        else f"image folder {path!r} is not a directory")
    subdirs = [d for d in _visible(os.listdir(root)) if os.path.isdir(os.path.join(root, d))]
    if not subdirs:
        raise UserError(f"image folder {path!r} is empty: it needs one subfolder of images per "
                        "class (or train/validation/test folders of them)")
    layout_dirs = [d for d in subdirs if d in SPLIT_NAMES]
    if layout_dirs:
        if "train" not in layout_dirs:
            raise UserError(f"image folder {path!r} has {'/'.join(layout_dirs)} but no train/ folder")
        others = [d for d in subdirs if d not in SPLIT_NAMES]
        if others:
            raise UserError(
                f"image folder {path!r} mixes train/validation/test folders with other folders "
                f"({', '.join(others[:3])}); use either class folders or train/validation/test")
        split_dirs = {s: os.path.join(root, s) for s in layout_dirs}
    else:
        split_dirs = {"train": root}
    classes, files = _class_files(split_dirs["train"], f"{path!r}")
    if len(classes) < 2:
        raise UserError(
            f"image folder {split_dirs['train']!r} has {len(classes)} class folder"
            f"{'' if len(classes) == 1 else 's'}"
            f"{' (' + classes[0] + ')' if classes else ''}; a classifier needs at least 2 "
            "(one subfolder of images per class)")
    out = [_File(f, os.path.relpath(f, root), i, "train") for i, c in enumerate(classes) for f in files[c]]
    for s in ("validation", "test"):
        if s not in split_dirs:
            continue
        sc, sf = _class_files(split_dirs[s], f"{path!r} ({s})")
        if sc != classes:
            missing, extra = sorted(set(classes) - set(sc)), sorted(set(sc) - set(classes))
            raise UserError(
                f"the {s}/ classes of image folder {path!r} differ from train/'s"
                f"{': missing ' + ', '.join(missing[:3]) if missing else ''}"
                f"{': extra ' + ', '.join(extra[:3]) if extra else ''}")
        out += [_File(f, os.path.relpath(f, root), i, s) for i, c in enumerate(sc) for f in sf[c]]
    return classes, out


def content_key(root: str, files: list[_File], options: Options) -> str:
    h = hashlib.sha256(f"{_FORMAT}\n{options.image_size}\n{bool(options.skip_bad_images)}\n".encode())
    for f in files:
        st = os.stat(f.path)
        h.update(f"{f.rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _path_key(root: str) -> str:
    return hashlib.sha256(root.encode()).hexdigest()[:10]


@dataclasses.dataclass
class _Checked:
    """What the first pass learned of one good file."""

    file: _File
    grey: bool
    size: tuple[int, int]  # (W, H) as stored (after image_size)
    sums: np.ndarray  # per channel: sum, sum of squares (float64), over [0, 1] pixels
    pixels: int
    canonical: bool  # stored as its own bytes (already L or RGB and not resized)


def _open(f: _File) -> Image.Image:
    im = Image.open(f.path)
    im.load()
    return im


def _check(files: list[_File], folder: str, options: Options) -> tuple[list[_Checked], list[str]]:
    """Opens and decodes every file (every error before anything is written)."""
    good, bad = [], []
    for f in files:
        try:
            with Image.open(f.path) as im:
                im.load()
                mode = im.mode
                grey = mode in _GREY_MODES
                target = "L" if grey else "RGB"
                arr = np.asarray(im if mode == target else im.convert(target))
        except Exception as e:  # noqa: BLE001  (Pillow raises many types for bad files)
            if not options.skip_bad_images:
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise UserError(
                    f"cannot read image {f.path!r} ({why}); remove it, or set "
                    "data.skip_bad_images=true to skip (and count) files that do not decode"
                ) from None
            bad.append(f.rel)
            continue
        if arr.ndim == 2:
            arr = arr[..., None]
        resized = bool(options.image_size) and arr.shape[:2] != (options.image_size,) * 2
        if options.image_size:
            arr = resize_square(arr, options.image_size)
        x = arr.reshape(-1, arr.shape[-1]).astype(np.float64) / 255.0
        good.append(_Checked(f, grey, (arr.shape[1], arr.shape[0]),
                             np.stack([x.sum(0), (x * x).sum(0)]), len(x),
                             canonical=not resized and mode == target))
    if not good:
        raise UserError(f"image folder {folder!r} has no readable image")
    labels = {c.file.label for c in good if c.file.split == "train"}
    empty = next((f for f in files if f.split == "train" and f.label not in labels), None)
    if empty is not None:
        raise UserError(f"class folder {os.path.dirname(empty.path)!r} has no readable image "
                        f"({len(bad)} files skipped by data.skip_bad_images)")
    greys = [c for c in good if c.grey]
    if greys and len(greys) < len(good):
        colour = next(c for c in good if not c.grey)
        raise UserError(
            f"image folder {folder!r} mixes grey and colour images ({greys[0].file.rel} is grey, "
            f"{colour.file.rel} is colour); convert them to one kind")
    sizes = {c.size for c in good}
    if len(sizes) > 1:
        a = good[0]
        b = next(c for c in good if c.size != a.size)
        raise UserError(
            f"image folder {folder!r} has images of several sizes ({a.file.rel} is "
            f"{a.size[0]}x{a.size[1]}, {b.file.rel} is {b.size[0]}x{b.size[1]}); set "
            "data.image_size to resize them all")
    return good, bad


def _assign_splits(good: list[_Checked]) -> dict[str, list[_Checked]]:
    """Splits by the layout; without a test/ folder, a stratified seeded hold-out of
    ``TEST_FRACTION`` of each class of train (over the readable files)."""
    from cnn_jax.data.embedded import stratified_split

    out = {s: [c for c in good if c.file.split == s] for s in SPLIT_NAMES}
    if not out["test"]:
        train = out["train"]
        tr, te = stratified_split(np.asarray([c.file.label for c in train]), TEST_FRACTION, TEST_SEED)
        out["train"], out["test"] = [train[i] for i in tr], [train[i] for i in te]
    if not out["test"]:
        raise UserError("the image folder has too few images for a test split; add a test/ folder")
    return {s: v for s, v in out.items() if v}


def _encoded(c: _Checked, options: Options) -> bytes:
    if c.canonical:
        with open(c.file.path, "rb") as f:
            return f.read()
    with _open(c.file) as im:
        arr = np.asarray(im.convert("L" if c.grey else "RGB"))
    if arr.ndim == 2:
        arr = arr[..., None]
    if options.image_size:
        arr = resize_square(arr, options.image_size)
    return encode_image(arr, "PNG")


def _write(name: str, data_dir: str, classes: list[str], shape: tuple, splits: dict, options: Options,
           skipped: int = 0) -> None:
    def examples(items):
        return lambda: ((_encoded(c, options), c.file.label) for c in items)

    counts = ", ".join(f"{len(v)} {s}" for s, v in splits.items())
    write_tfds(name, data_dir, {s: examples(v) for s, v in splits.items()}, shape=shape,
                      class_names=classes, description="an image folder converted by cnn_jax",
                      announce=f"converting image folder {options.path} ({len(classes)} classes; "
                               f"{counts} images{f'; {skipped} unreadable files skipped' if skipped else ''}) "
                               f"into {os.path.join(data_dir, name)}")


def _spec(meta: dict) -> DatasetSpec:
    return DatasetSpec(
        "image_folder", meta["tfds_name"], len(meta["classes"]), tuple(meta["shape"]),
        tuple(meta["mean"]), tuple(meta["std"]),
        validation_split="validation" if "validation" in meta["splits"] else None,
        skipped_files=tuple(meta["skipped"]),
    )


def _read_meta(path: str, key: str) -> dict | None:
    try:
        with open(path) as f:
            meta = json.load(f)
        return meta if meta.get("key") == key else None
    except (OSError, ValueError):
        return None


def resolve(options: Options, data_dir: str) -> DatasetSpec:
    """The dataset of folder ``options.path``, converted into ``data_dir`` unless a
    conversion of the same content is there; raises a one-line :class:`UserError`
    (nothing written) for a bad folder."""
    classes, files = scan(options.path)
    root = os.path.abspath(os.path.expanduser(options.path))
    key = content_key(root, files, options)
    prefix = f"image_folder_{_path_key(root)}"
    name = f"{prefix}_{key}"
    meta_path = os.path.join(data_dir, name, META)
    meta = _read_meta(meta_path, key)
    if meta is not None:
        return _spec(meta)
    good, bad = _check(files, options.path, options)
    splits = _assign_splits(good)
    w, h = good[0].size
    shape = (h, w, 1 if good[0].grey else 3)
    sums = sum(c.sums for c in splits["train"])
    npix = sum(c.pixels for c in splits["train"])
    mean = sums[0] / npix
    std = np.sqrt(np.maximum(sums[1] / npix - mean**2, 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant channel: only centred
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create data directory {data_dir!r}: {e.strerror}") from None
    with open(os.path.join(data_dir, f".{prefix}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one converter at a time (sweep workers)
        meta = _read_meta(meta_path, key)
        if meta is not None:
            return _spec(meta)
        shutil.rmtree(os.path.join(data_dir, name), ignore_errors=True)  # a half-written one
        _write(name, data_dir, classes, shape, splits, options, len(bad))
        meta = {
            "key": key, "source": root, "tfds_name": name, "classes": classes, "shape": list(shape),
            "mean": [round(float(m), 6) for m in mean], "std": [round(float(s), 6) for s in std],
            "splits": {s: len(v) for s, v in splits.items()}, "skipped": bad,
            "image_size": options.image_size,
        }
        tmp = f"{meta_path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=1)
        os.replace(tmp, meta_path)
        for other in os.listdir(data_dir):  # older conversions of this folder
            if other.startswith(prefix + "_") and other != name:
                shutil.rmtree(os.path.join(data_dir, other), ignore_errors=True)
    return _spec(meta)


register(DatasetSpec("image_folder", "", 0, (None, None, 3), (0.0,), (1.0,), resolve=resolve))
