"""Multi-GPU training: ``train.device: 0,1,2,3`` reaches ultralytics' trainer arguments unchanged
and makes ultralytics launch DDP (world size 4); checked on CPU without building a trainer."""
from __future__ import annotations

import pytest
import yaml

from sim2real.safety import block_network
from tests.conftest import ROOT


@pytest.mark.parametrize("device_yaml, world", [("0,1,2,3", 4), ("0", 1), ("cpu", 0)])
def test_train_device_reaches_ultralytics_trainer_args(tmp_path, device_yaml, world):
    from sim2real.detect import offline
    from sim2real.detect.train import DetectTrainConfig, train_args
    from sim2real.params import build

    section = dict(yaml.safe_load((ROOT / "params.yaml").read_text())["train"])
    section["device"] = yaml.safe_load(f"device: {device_yaml}")["device"]  # as params.yaml would give it
    section["batch"] = 32
    cfg = build(DetectTrainConfig, section)
    args = train_args(cfg, tmp_path / "data.yaml", tmp_path / "runs" / "train")
    assert args["device"] == device_yaml
    assert args["amp"] == (world > 0 and bool(section["amp"]))  # AMP only on CUDA

    with block_network() as refused:  # configuring ultralytics stays offline
        offline.configure(tmp_path / "scratch")
        from ultralytics.cfg import get_cfg
        from ultralytics.utils import DEFAULT_CFG
        from ultralytics.utils.torch_utils import parse_device

        ucfg = get_cfg(DEFAULT_CFG, args)  # what BaseTrainer.__init__ does with YOLO.train's kwargs
        device = parse_device(ucfg.device)
    assert refused == []
    assert device == device_yaml
    # BaseTrainer's own rule (ultralytics/engine/trainer.py): world size = number of listed devices,
    # DDP when > 1; the total batch is split evenly across them
    n = 0 if device in ("cpu", "mps") else len(device.split(","))
    assert n == world
    if n > 1:
        assert ucfg.batch % n == 0 and ucfg.batch // n == 8
