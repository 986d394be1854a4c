"""`Engine.close()` lets go of every tensor the optimizer held: the export after training then holds one copy
of the model, not the training state beside it. DeepSpeed's ZeRO-3 optimizer stays reachable after its own
`destroy()` (from the parameters and their hooks), so this failed for ZeRO-3 before close() dropped them.

Each stage runs in a fresh process (DeepSpeed's process group is per process): two optimizer steps of a tiny
XLM-R, weak references to every tensor of the optimizer (its wrapper's attributes and the torch optimizer's
state), close(), and a count of the references still alive.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tensors(value):
    import torch

    if isinstance(value, torch.Tensor):
        if value.numel() > 1:  # not the step counters
            yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def probe(stage: int) -> dict[str, int]:
    """Train 2 steps at ZeRO `stage`, close the engine; how many of the optimizer's tensors are still alive."""
    sys.path.insert(0, str(REPO / "tests"))
    from ds_worker import collate, random_examples, tiny_model

    from hpcxlt.config import TrainConfig
    from hpcxlt.train.engine import Engine

    model = tiny_model(0)
    train = TrainConfig(micro_batch_size=4, grad_accum=1, max_steps=2, zero_stage=stage)
    engine = Engine(model, train, total_steps=2, persistence_threshold=0)
    data = random_examples(0)
    for step in range(2):
        engine.step(collate(data[4 * step : 4 * step + 4]))
    wrapper = engine.optimizer
    inner = getattr(wrapper, "optimizer", wrapper)
    refs = [weakref.ref(t) for t in [*_tensors(list(inner.state.values())), *_tensors(vars(wrapper))]]
    steps = sum(1 for state in inner.state.values() if state)
    del wrapper, inner
    engine.close()
    del model
    gc.collect()
    return {"tracked": len(refs), "with_adam_state": steps, "alive": sum(ref() is not None for ref in refs)}


@pytest.mark.deepspeed
@pytest.mark.parametrize("stage", [2, 3])
def test_close_frees_every_tensor_of_the_optimizer(stage):
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    done = subprocess.run(
        [sys.executable, __file__, str(stage)], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # the probe saw the optimizer's partitions and Adam's moments (the steps ran), and none of them survived
    assert result["tracked"] > 10 and result["with_adam_state"] > 0, result
    assert result["alive"] == 0, result


if __name__ == "__main__":
    print(json.dumps(probe(int(sys.argv[1]))))
