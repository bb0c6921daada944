"""The streaming input pipeline (grain workers) against the in-memory one: same batches,
independent of the worker count, exact resume after kill -9, per-host shards, full
evaluation, bounded memory, and one clear line for each bad input."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers.batches import same, take
from helpers.hold import hold, wait_held
from PIL import Image

from cnn_jax import data
from cnn_jax.data import decode, info, writer
from cnn_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(__file__))
EXP = "experiments/lenet5_mnist.py"


def _jpegs(n: int, seed: int, sizes=(20, 40), corrupt=()):
    """``n`` random JPEGs of varying sizes, labels ``i % 10``; ``corrupt``: positions whose
    bytes are not an image."""
    def make():
        rng = np.random.default_rng(seed)
        for i in range(n):
            h, w = rng.integers(sizes[0], sizes[1], 2)
            low = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            img = np.asarray(Image.fromarray(low).resize((int(w), int(h))))
            yield (b"\xff\xd8 not a jpeg" if i in corrupt else writer.encode(img, "JPEG", quality=90)), i % 10
    return make


def _fake_imagenette(data_dir: str, n_train=60, n_val=25, corrupt=()) -> str:
    """A small stand-in for tfds imagenette/160px-v2 (JPEGs of varying sizes) in
    ``data_dir``: read through the registered ``imagenette_160`` dataset."""
    writer.write_tfds("imagenette", data_dir,
                      {"train": _jpegs(n_train, 0, corrupt=corrupt), "validation": _jpegs(n_val, 1)},
                      shape=(None, None, 3), num_classes=10, config="160px-v2")
    return data_dir


@pytest.fixture(scope="module")
def inet_dir(tmp_path_factory) -> str:
    return _fake_imagenette(str(tmp_path_factory.mktemp("inet")))


@pytest.fixture(scope="module")
def corrupt_dir(tmp_path_factory) -> str:
    return _fake_imagenette(str(tmp_path_factory.mktemp("inet_bad")), corrupt=(7,))


def _streamed(name, split, d, **opts):
    s = data.load(name, split, d, data.Options(in_memory="false", **opts))
    assert isinstance(s, data.StreamSplit)
    return s


def _in_memory(name, split, d, **opts):
    s = data.load(name, split, d, data.Options(in_memory="true", **opts))
    assert isinstance(s, data.Split)
    return s


@pytest.mark.parametrize("name,opts,aug", [
    ("digits", {}, {}),  # transforms off
    ("digits", {}, {"crop_padding": 2, "flip": True}),  # CIFAR-style
    ("imagenette_160", {"image_size": 24, "crop_size": 16}, {"flip": True}),  # ImageNet-style
])
def test_both_paths_give_identical_batches(name, opts, aug, data_dir, inet_dir):
    d = data_dir if name == "digits" else inet_dir
    mem, st = _in_memory(name, "train", d, **opts), _streamed(name, "train", d, workers=0, **opts)
    np.testing.assert_array_equal(mem.labels, st.labels)
    assert mem.spec.shape == st.spec.shape
    # across an epoch boundary (digits: 1,438 examples, 44 steps of 32)
    b = 32 if name == "digits" else 8
    same(take(data.train_iterator(mem, b, seed=5, **aug), 50 if name == "digits" else 10),
          take(data.train_iterator(st, b, seed=5, **aug), 50 if name == "digits" else 10))


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_u8_batches_normalised_on_the_device_are_the_host_batches(workers, inet_dir):
    """The training loop takes a streamed split's u8 pixels (a quarter of the bytes through
    shared memory) and normalises them on the devices: bit for bit the host's f32 batches."""
    import jax

    from cnn_jax.train.parallel import normalizing

    split = _streamed("imagenette_160", "train", inet_dir, workers=workers, crop_size=16)
    put = normalizing(lambda b: jax.device_put(b), split.spec)
    host = take(data.train_iterator(split, 8, seed=3, flip=True), 4)
    raw = take(data.train_iterator(split, 8, seed=3, flip=True, normalized=False), 4)
    assert raw[0]["image"].dtype == np.uint8 and host[0]["image"].dtype == np.float32
    same(host, [jax.device_get(put(b)) for b in raw])
    val = _streamed("imagenette_160", "validation", inet_dir, workers=workers, crop_size=16)
    host = list(data.eval_batches(val, 10))  # 25 examples: the last batch padded
    raw = list(data.eval_batches(val, 10, normalized=False))
    assert raw[-1]["image"].dtype == np.uint8 and not raw[-1]["image"][5:].any()
    same(host, [jax.device_get(put(b)) for b in raw])


def test_streaming_batches_do_not_depend_on_the_worker_count_or_a_resume(inet_dir):
    opts = {"crop_size": 16}

    def stream(workers, state=None, seed=1):
        split = _streamed("imagenette_160", "train", inet_dir, workers=workers, **opts)
        return data.train_iterator(split, 8, seed=seed, flip=True, state=state)

    ref = take(stream(1), 12)
    four = stream(4)
    head = [next(four) for _ in range(5)]
    state = four.get_state()
    assert state == {"next_index": 5}
    same(head + take(four, 7), ref)
    # resumed at step 5 from the saved state (through JSON, as in a checkpoint), in-process
    same(take(stream(0, state=json.loads(json.dumps(state))), 7), ref[5:])
    # random-resized crops: 16x16 views, other draws for another seed
    assert ref[0]["image"].shape == (8, 16, 16, 3)
    assert not np.array_equal(take(stream(0, seed=2), 1)[0]["image"], ref[0]["image"])


@pytest.mark.parametrize("path", ["in_memory", "streaming"])
def test_evaluation_sees_every_example_once(path, data_dir):
    load = _in_memory if path == "in_memory" else _streamed
    split = load("digits", "test", data_dir, **({} if path == "in_memory" else {"workers": 2}))
    ref = data.load("digits", "test", data_dir)
    batches = list(data.eval_batches(split, 100))
    assert len(batches) == data.num_eval_batches(len(ref), 100) == 4  # 359 examples
    images = np.concatenate([b["image"][b["mask"]] for b in batches])
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    assert all(b["image"].shape[0] == 100 for b in batches) and batches[-1]["mask"].sum() == 59
    np.testing.assert_array_equal(labels, ref.labels)
    np.testing.assert_allclose(images, (ref.images / 255.0 - 0.3053) / 0.3759, rtol=1e-5, atol=1e-6)


def test_streamed_eval_shards_are_the_rows_of_each_global_batch(inet_dir):
    whole = list(data.eval_batches(_streamed("imagenette_160", "test", inet_dir, workers=0, crop_size=16), 10))
    parts = [list(data.eval_batches(_streamed("imagenette_160", "test", inet_dir, workers=0, crop_size=16,
                                              process_index=p, process_count=2), 10)) for p in (0, 1)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 3  # 25 examples
    for w, a, b in zip(whole, *parts):
        for k in ("image", "label", "mask"):
            np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), w[k])
    assert sum(int(b["mask"].sum()) for b in whole) == 25


_SHARD_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    from cnn_jax import data
    from cnn_jax.data import streaming
    d, p, k, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    read = []
    orig = streaming.RecordImages.read
    def counting(self, positions):
        read.append(len(positions))
        return orig(self, positions)
    streaming.RecordImages.read = counting
    split = data.load("digits", "train", d, data.Options(in_memory="false", workers=0,
                                                         process_index=p, process_count=k))
    it = data.train_iterator(split, 32, seed=3, crop_padding=1, flip=True)
    batches = [next(it) for _ in range(4)]
    np.savez(out, image=np.stack([b["image"] for b in batches]),
             label=np.stack([b["label"] for b in batches]), read=np.asarray(read))
""")


def test_two_processes_each_read_their_disjoint_half(data_dir, tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", _SHARD_SCRIPT, data_dir, str(p), "2",
                               str(tmp_path / f"p{p}.npz")], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for p in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    halves = [np.load(tmp_path / f"p{p}.npz") for p in (0, 1)]
    whole = take(data.train_iterator(data.load("digits", "train", data_dir), 32, seed=3,
                                      crop_padding=1, flip=True), 4)
    for p, h in enumerate(halves):
        assert h["image"].shape == (4, 16, 8, 8, 1)
        assert list(h["read"]) == [16] * 4  # each process decoded only its 16 rows
        for step, w in enumerate(whole):
            np.testing.assert_array_equal(h["image"][step], w["image"][16 * p:16 * (p + 1)])
            np.testing.assert_array_equal(h["label"][step], w["label"][16 * p:16 * (p + 1)])


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_stays_bounded_when_the_split_exceeds_max_memory_gb(tmp_path):
    d = str(tmp_path)
    # 300 JPEGs of 200x200x3: 36 MB decoded, 0.036 GB > data.max_memory_gb=0.01
    writer.write_tfds("imagenette", d, {"train": _jpegs(300, 3, sizes=(200, 201)),
                                        "validation": _jpegs(4, 4)},
                      shape=(None, None, 3), num_classes=10, config="160px-v2")
    opts = data.Options(max_memory_gb=0.01, workers=0, image_size=200)
    split = data.load("imagenette_160", "train", d, opts)
    assert split.streaming and "data.max_memory_gb=0.01" in split.why
    decoded = len(split) * 200 * 200 * 3
    it = data.train_iterator(split, 20, seed=0)
    next(it)
    base, peak = _rss(), 0
    for _ in range(len(split) // 20 * 2):  # two epochs
        next(it)
        peak = max(peak, _rss())
    # a few batches (20 x 200 x 200 x 3 floats: 9.6 MB each) at most, never the split
    assert peak - base < decoded / 3, (peak - base, decoded)
    with pytest.raises(UserError, match=r"data.in_memory=true: split 'train' .* ~0.036 GB decoded "
                                         r"\(300 images of 200x200x3\), more than data.max_memory_gb=0.01"):
        data.load("imagenette_160", "train", d, data.Options(in_memory="true", max_memory_gb=0.01,
                                                             image_size=200))


def test_in_memory_true_that_cannot_fit_fails_before_decoding(data_dir, monkeypatch):
    monkeypatch.setattr(decode, "decode", lambda *a: pytest.fail("decoded"))
    monkeypatch.setattr(decode, "decoded_cache_path", lambda *a: None)
    with pytest.raises(UserError, match=r"~9.2e-05 GB decoded \(1438 images of 8x8x1\), more than "
                                         r"data.max_memory_gb=1e-05"):
        data.load("digits", "train", data_dir, data.Options(in_memory="true", max_memory_gb=1e-5))
    s = data.load("digits", "train", data_dir, data.Options(max_memory_gb=1e-5, workers=0))
    assert s.streaming and s.why == "decoded ~9.2e-05 GB > data.max_memory_gb=1e-05"


def test_bad_pipeline_options(data_dir, inet_dir):
    with pytest.raises(UserError, match=r"data.crop_size 16 is larger than the 8x8 images of dataset "
                                         r"'digits'; choose data.crop_size <= 8 or set data.image_size >= 16"):
        data.load("digits", "train", data_dir, data.Options(crop_size=16))
    assert data.load("digits", "train", data_dir, data.Options(crop_size=16, image_size=16)).spec.shape == (16, 16, 1)
    with pytest.raises(UserError, match=r"'imagenette_160' has images of varying sizes; set data.crop_size"):
        data.load("imagenette_160", "train", inet_dir)
    with pytest.raises(UserError, match=r"data.in_memory=true needs images of one size"):
        data.load("imagenette_160", "train", inet_dir, data.Options(in_memory="true", crop_size=16))
    with pytest.raises(UserError, match=r"data.workers must be >= 0"):
        info.num_workers(-1)
    cap = 4 * info.usable_cpus()
    with pytest.warns(UserWarning, match=rf"data.workers=100000 is more than 4 x the .* using {cap}"):
        assert info.num_workers(100_000)[0] == cap
    split = _streamed("digits", "train", data_dir, workers=100_000)
    assert data.describe(split)["workers"] == cap and "using" in data.describe(split)["note"]


def test_imagenet2012_unprepared_says_how(tmp_path):
    with pytest.raises(UserError, match=r"'imagenet2012' .* is not prepared in .*ILSVRC2012_img_train.tar "
                                         r".*downloads/manual.*cnn-jax prepare imagenet2012 --data-dir"):
        data.load("imagenet2012", "train", str(tmp_path), data.Options(crop_size=224))


def _corrupt_index(d) -> int:
    """The index of the corrupt record (tfds orders records by a hash of their keys)."""
    import tensorflow_datasets as tfds

    src = tfds.data_source("imagenette/160px-v2", split="train", data_dir=d, download=False,
                           decoders={"image": tfds.decode.SkipDecoding()})
    (i,) = [i for i in range(len(src)) if src[i]["image"].startswith(b"\xff\xd8 not")]
    return i


def test_a_corrupt_record_is_named_or_skipped_and_counted(corrupt_dir):
    k = _corrupt_index(corrupt_dir)
    opts = {"crop_size": 16}
    with pytest.raises(UserError, match=rf"^record {k} of split 'train' of dataset 'imagenette_160' is not "
                                         r"a readable image \(not an image format Pillow reads\); set "
                                         r"data.skip_bad_images=true to skip \(and count\) such records$"):
        for _ in data.train_iterator(_streamed("imagenette_160", "train", corrupt_dir, workers=2, **opts), 12, 0):
            pass
    split = _streamed("imagenette_160", "train", corrupt_dir, workers=0, skip_bad_images=True, **opts)
    batches = take(data.train_iterator(split, 12, 0), 5)  # one epoch
    assert split.bad == {k} and all(b["image"].shape == (12, 16, 16, 3) for b in batches)
    with pytest.raises(UserError, match=rf"record {k} of split 'train'"):
        data.load("imagenette_160", "train", corrupt_dir, data.Options(in_memory="true", image_size=20))
    mem = data.load("imagenette_160", "train", corrupt_dir,
                    data.Options(in_memory="true", image_size=20, skip_bad_images=True))
    assert len(mem) == 59 and mem.bad == {k}


# -- through the command line ----------------------------------------------------------------


def _cli(workdir, data_dir, *extra, steps=30):
    return [sys.executable, "-m", "cnn_jax", "train", "--config", EXP, "--workdir", str(workdir),
            f"--config.data.data_dir={data_dir}", "--config.model.name=mlp",
            "--config.data.name=imagenette_160", "--config.data.crop_size=16",
            "--config.data.flip=true", "--config.data.batch_size=8", "--config.data.eval_batch_size=16",
            "--config.data.in_memory=false", "--config.data.workers=2", "--config.data.validation=10",
            f"--config.train.steps={steps}", "--config.train.checkpoint_every_steps=2",
            "--config.train.log_every_steps=2", "--config.train.eval_every_epochs=100", "--quiet", *extra]


def _env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.pop("CNN_JAX_HOST_DEVICES", None)
    return env


def _read(path):
    with open(path) as f:
        return f.read()


def _logged_steps(workdir) -> int:
    try:
        rows = [json.loads(line) for line in _read(os.path.join(workdir, "metrics.jsonl")).splitlines() if line]
    except FileNotFoundError:
        return 0
    return max((r["step"] for r in rows if r["split"] == "train"), default=0)


@pytest.mark.long  # 35 s: in the long stage, for the default suite's budget
def test_kill_9_of_a_streaming_run_then_rerun_is_the_uninterrupted_result(inet_dir, tmp_path):
    ref, wd = tmp_path / "ref", tmp_path / "run"
    # the reference decodes in the training process: the stream does not depend on workers
    p = subprocess.run(_cli(ref, inet_dir, "--config.data.workers=0"), check=False, capture_output=True, text=True,
                       env=_env(), cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(_read(ref / "summary.json"))
    assert summary["pipeline"]["train"]["path"] == "streaming" and summary["pipeline"]["train"]["workers"] == 0
    # held inside its 13th batch (helpers/hold.py) while it is killed: mid-run on any machine
    env, held, _ = hold(tmp_path, batch=13)
    life = subprocess.Popen(_cli(wd, inet_dir), env={**_env(), **env}, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wait_held(life, held)
    life.kill()
    life.wait()
    assert _logged_steps(wd) >= 2  # it had trained and logged before the kill
    assert not os.path.exists(wd / "summary.json")
    again = subprocess.run(_cli(wd, inet_dir)[:-1], check=False, capture_output=True, text=True, env=_env(), cwd=ROOT,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from step" in again.stdout
    assert "data: streaming train (data.in_memory=false), validation" in again.stdout
    assert json.loads(_read(wd / "summary.json"))["pipeline"]["train"]["workers"] == 2
    assert _read(wd / "metrics.jsonl") == _read(ref / "metrics.jsonl")
    a, b = json.loads(_read(wd / "summary.json")), json.loads(_read(ref / "summary.json"))
    assert a["test"] == b["test"] and a["train"] == b["train"]


def test_a_corrupt_record_stops_the_run_or_is_skipped_and_counted(corrupt_dir, tmp_path):
    p = subprocess.run(_cli(tmp_path / "stop", corrupt_dir, steps=12), check=False, capture_output=True, text=True,
                       env=_env(), cwd=ROOT, timeout=600)
    assert p.returncode == 2, p.stderr[-3000:]
    assert p.stderr.strip().splitlines()[-1] == (
        f"error: record {_corrupt_index(corrupt_dir)} of split 'train' of dataset 'imagenette_160' is "
        "not a readable image (not an image format Pillow reads); set data.skip_bad_images=true to "
        "skip (and count) such records")
    assert "Traceback" not in p.stderr
    p = subprocess.run(_cli(tmp_path / "skip", corrupt_dir, "--config.data.skip_bad_images=true", steps=12),
                       check=False, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(_read(tmp_path / "skip" / "summary.json"))["pipeline"]["skipped_images"] == 1


@pytest.mark.slow
def test_resnet18_trains_end_to_end_on_a_streamed_jpeg_dataset(tmp_path):
    d = str(tmp_path / "data")
    writer.write_tfds("imagenette", d, {"train": _jpegs(96, 0, sizes=(64, 120)),
                                        "validation": _jpegs(32, 1, sizes=(64, 120))},
                      shape=(None, None, 3), num_classes=10, config="160px-v2")
    cmd = [sys.executable, "-m", "cnn_jax", "train", "--config", EXP, "--workdir", str(tmp_path / "run"),
           f"--config.data.data_dir={d}", "--config.model.name=resnet18",
           "--config.data.name=imagenette_160", "--config.data.crop_size=64", "--config.data.flip=true",
           "--config.data.batch_size=16", "--config.data.eval_batch_size=32",
           "--config.data.workers=2", "--config.data.max_memory_gb=0.0001",
           "--config.train.steps=6", "--config.train.log_every_steps=2"]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads(_read(tmp_path / "run" / "summary.json"))
    assert s["pipeline"]["train"]["path"] == "streaming" and s["pipeline"]["train"]["workers"] == 2
    assert s["steps"] == 6 and s["test"]["count"] == 32 and np.isfinite(s["train"]["loss"])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_streaming_run_matches_one_process_in_memory(data_dir, tmp_path):
    # each of 2 processes (2 CPU devices each) streams only its half of every batch; the
    # result equals one process with 4 devices reading the split from memory
    common = [sys.executable, "-m", "cnn_jax", "train", "--config", EXP, "--quiet",
              "--config.model.name=mlp", "--config.data.name=digits", "--config.data.batch_size=32",
              "--config.optim.name=momentum", "--config.optim.learning_rate=0.05",
              f"--config.data.data_dir={data_dir}", "--config.train.steps=12",
              "--config.parallel.mode=sharded", "--config.data.crop_padding=1", "--config.data.flip=true"]

    def env(devices):
        return {**_env(), "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}

    p = subprocess.run([*common, "--workdir", str(tmp_path / "one"), "--config.data.in_memory=true"],
                       check=False, capture_output=True, text=True, env=env(4), cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    port = _free_port()
    procs = [subprocess.Popen([*common, "--workdir", str(tmp_path / "two"), "--config.data.in_memory=false",
                               "--config.data.workers=1", "--coordinator", f"127.0.0.1:{port}",
                               "--num-processes", "2", "--process-id", str(i)],
                              env=env(2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [q.communicate(timeout=600) for q in procs]
    assert [q.returncode for q in procs] == [0, 0], [o[1][-2000:] for o in outs]
    one, two = (json.loads(_read(tmp_path / w / "summary.json")) for w in ("one", "two"))
    assert two["pipeline"]["train"]["path"] == "streaming" and one["pipeline"]["train"]["path"] == "in_memory"
    assert two["parallel"] == {"mode": "sharded", "devices": 4}
    for k in ("loss", "accuracy"):
        assert abs(two["test"][k] - one["test"][k]) <= 1e-6 + 1e-5 * abs(one["test"][k]), (k, one, two)
    assert two["test"]["count"] == one["test"]["count"] == 359


@pytest.mark.parametrize("name", [n for n in data.names() if data.DATASETS.get(n).builder is None
                                  and data.DATASETS.get(n).resolve is None])
def test_every_tfds_dataset_takes_either_path_under_mock_data(name, tmp_path):
    import tensorflow_datasets as tfds

    spec = data.DATASETS.get(name)
    opts = {} if spec.fixed_size else {"crop_size": 16, "image_size": 20}
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        mem = _in_memory(name, "test", str(tmp_path), **opts)
        st = _streamed(name, "test", str(tmp_path), workers=2, **opts)  # mock data: in-process
        assert data.describe(st)["workers"] == 0
        same(take(data.train_iterator(mem, 4, seed=0, flip=True), 2),
              take(data.train_iterator(st, 4, seed=0, flip=True), 2))
        same(list(data.eval_batches(mem, 4)), list(data.eval_batches(st, 4)))
