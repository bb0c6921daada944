"""Writing a tfds ArrayRecord image-classification dataset without TensorFlow.

Image folders are converted with it; tests and benchmarks make their datasets with it.
The result is read with ``tfds.data_source(name, data_dir=...)`` like any prepared tfds
dataset (a name that no tfds builder registers is read from its files).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image


def encode(image: np.ndarray, fmt: str = "PNG", **save_args) -> bytes:
    """``u8[H, W, C]`` (C = 1 or 3) as PNG or JPEG bytes (Pillow)."""
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format=fmt, **save_args)
    return buf.getvalue()


def write_tfds(
    name: str,
    data_dir: str,
    splits: dict[str, Callable[[], Iterable[tuple[bytes, int]]]],
    *,
    shape: tuple,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    config: str | None = None,
    version: str = "1.0.0",
    description: str = "",
    announce: str = "",
) -> str:
    """Writes dataset ``name`` (builder config ``config``, if any) into ``data_dir``:
    ``splits[s]()`` yields the ``(encoded image bytes, label)`` examples of split ``s``,
    stored as they are (a ``tfds.features.Image`` of ``shape``, ``None`` for sizes that
    vary, and a ``ClassLabel``). ``announce``: a line for stderr as writing starts (tfds'
    own "Downloading and preparing" lines are not printed). Returns the dataset's directory."""
    import tensorflow_datasets as tfds

    labels = (tfds.features.ClassLabel(names=class_names) if class_names is not None
              else tfds.features.ClassLabel(num_classes=num_classes))

    with tfds.core.registered.skip_registration():

        class _Written(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version(version)
            BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=config)] if config else []

            # tfds announces "Downloading and preparing dataset ..." on stdout: nothing is
            # downloaded here (and stdout may carry a command's result)
            def _log_download_bytes(self) -> None:
                if announce:
                    print(announce, file=sys.stderr)

            def _log_download_done(self) -> None:
                pass

            def _info(self):
                return tfds.core.DatasetInfo(
                    builder=self,
                    description=description,
                    features=tfds.features.FeaturesDict(
                        {"image": tfds.features.Image(shape=tuple(shape)), "label": labels}),
                    supervised_keys=("image", "label"),
                )

            def _split_generators(self, dl_manager):
                return {s: self._generate_examples(make) for s, make in splits.items()}

            def _generate_examples(self, make):
                for i, (image, label) in enumerate(make()):
                    yield i, {"image": image, "label": int(label)}

        _Written.name = name
    tfds.disable_progress_bar()
    builder = _Written(data_dir=data_dir, file_format="array_record", config=config)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(compute_stats=tfds.download.ComputeStatsMode.SKIP))
    return str(builder.data_dir)
