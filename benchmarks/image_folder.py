"""How long converting an image folder (``data.name=image_folder``) takes.

Makes a folder of ``--num`` images (default 1,000: 10 class folders, PNG and JPEG
alternately, ``--size`` x ``--size`` RGB) and times, each in a fresh data directory, its
conversion into a tfds ArrayRecord dataset (scanning, decoding every image for the checks
and the training statistics, writing) as ``cnn_jax.data.load`` does it on first use, in a
process that has already imported cnn_jax (the import is not counted), together with that
first load's decoding of the train split into memory; then the cached case (the folder
unchanged). Goal: a 1,000-image folder in under 10 s.

  python benchmarks/image_folder.py [--num 1000] [--size 128] [--image-size 0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time


def make_folder(root: str, num: int, size: int, classes: int = 10) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(num):
        d = os.path.join(root, f"class_{i % classes:02d}")
        os.makedirs(d, exist_ok=True)
        low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC))
        ext = "png" if i % 2 else "jpg"
        Image.fromarray(img).save(os.path.join(d, f"{i:05d}.{ext}"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=0, help="data.image_size (0: as stored)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from cnn_jax import data

    work = tempfile.mkdtemp(prefix="cnn_jax_image_folder_")
    try:
        folder = os.path.join(work, "images")
        make_folder(folder, args.num, args.size)
        opts = data.Options(path=folder, image_size=args.image_size)
        cold = []
        for r in range(args.rounds):
            d = os.path.join(work, f"data{r}")
            t = time.perf_counter()
            spec = data.load("image_folder", "train", d, opts).spec
            cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        data.load("image_folder", "train", d, opts)
        cached = time.perf_counter() - t
        print(f"{args.num} images ({args.size}x{args.size}, PNG/JPEG, {spec.num_classes} classes"
              f"{', image_size ' + str(args.image_size) if args.image_size else ''}), "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(f"first load (conversion, then the train split decoded into memory): median "
              f"{statistics.median(cold):.2f} s of {args.rounds} ({', '.join(f'{c:.2f}' for c in cold)}); "
              f"again (cached conversion and decoded split): {cached:.3f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
