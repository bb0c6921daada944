"""TensorBoard HParams of sweep trials: what tensorboard's HParams tab reads."""

import glob
import os
import struct

from tensorboardX.proto import event_pb2
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

from cnn_jax.study.execution import hparams


def _events(logdir):
    out = []
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        data = open(path, "rb").read()
        i = 0
        while i < len(data):  # TFRecord: length, crc, payload, crc
            (n,) = struct.unpack("<Q", data[i:i + 8])
            ev = event_pb2.Event()
            ev.ParseFromString(data[i + 12:i + 12 + n])
            out.append(ev)
            i += 12 + n + 4
    return out


def test_a_trial_writes_its_swept_values_and_final_metrics(tmp_path):
    summary = {"test": {"accuracy": 0.97}, "validation": {"accuracy": 0.96},
               "best": {"validation_accuracy": 0.965, "test_accuracy": 0.968}, "steps": 40}
    point = {"model.name": "lenet5", "model.pool": ("max", "avg"), "optim.learning_rate": 3e-3}
    session = hparams.write(str(tmp_path), point, 2, summary, {"shift_consistency": 0.5})
    assert session == str(tmp_path / "tensorboard" / "hparams")  # a fixed, deterministic name
    infos = {}
    scalars = {}
    for ev in _events(session):
        for v in ev.summary.value:
            if v.metadata.plugin_data.plugin_name == "hparams":
                data = HParamsPluginData()
                data.ParseFromString(v.metadata.plugin_data.content)
                if data.HasField("session_start_info"):
                    infos = {k: data.session_start_info.hparams[k] for k in data.session_start_info.hparams}
            elif v.HasField("simple_value"):
                scalars[v.tag] = v.simple_value
    assert infos["model.pool"].string_value == "max,avg"
    assert infos["model.name"].string_value == "lenet5"
    assert infos["optim.learning_rate"].number_value == 3e-3 and infos["seed"].number_value == 2
    assert abs(scalars["hparam/test_accuracy"] - 0.97) < 1e-6
    assert abs(scalars["hparam/best_validation_accuracy"] - 0.965) < 1e-6
    assert abs(scalars["hparam/shift_consistency"] - 0.5) < 1e-6
    # a re-run replaces the session instead of adding a second one
    hparams.write(str(tmp_path), point, 2, summary, {})
    assert len(glob.glob(os.path.join(session, "events.out.tfevents.*"))) == 1
