"""`batch --ray` on a local Ray instance started here (loopback only): the same JSON results as the
local workers, and a worker killed mid-task is retried. Skips only when Ray is not installed
(`make test` installs the ray extra)."""
from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from core.batch import expand_inputs, run_collection, verify  # noqa: E402
from core.batch.cli import pose_job  # noqa: E402
from core.config import Config  # noqa: E402


@dataclass
class KillFirstAttempt:
    """Wraps a job: the first attempt at ``victim`` SIGKILLs its own worker process mid-task
    (after writing some output), leaving the pid in ``marker``; later attempts run normally."""

    inner: object
    victim: str
    marker: str
    kind: str = "pose"

    def load(self, threads):
        return self.inner.load(threads)

    def run(self, state, video, dest, name, progress=None):
        if name == self.victim and not os.path.exists(self.marker):
            (dest / "half-written.json").write_text("[")
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.run(state, video, dest, name, progress)


@pytest.fixture(scope="module")
def local_ray():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def test_ray_same_results_and_survives_a_killed_worker(local_ray, local_run, clips, tmp_path, spec,
                                                        read_manifest):
    _, local_out = local_run
    out = tmp_path / "out"
    marker = tmp_path / "killed.pid"
    job = KillFirstAttempt(pose_job(Config.load(), json=True, mp4=False), victim="clip_1", marker=str(marker))
    summary = run_collection(expand_inputs([str(clips)]), out, job, threads=1, ray="auto", ray_retries=2,
                             progress=False)
    assert marker.exists(), "the victim's first attempt did not run"
    assert (summary.ok, summary.failed, summary.exit_code) == (spec["clips"] - 1, 1, 1)
    records = {r["name"]: r for r in read_manifest(out)}
    assert len(records) == spec["clips"]
    bad = records.pop(f"clip_{spec['corrupt']}")
    assert bad["status"] == "failed" and "not a readable video" in bad["error"]
    victim = records["clip_1"]
    assert victim["status"] == "ok" and victim["worker"].split(":")[1] != marker.read_text()  # retried elsewhere
    assert not (out / "clip_1" / "half-written.json").exists()
    assert not (out / ".partial").exists()
    for name, r in records.items():
        assert r["status"] == "ok" and r["frames"] == spec["frames"] and verify(r, out), r
        a = json.loads((local_out / name / f"{name}.json").read_text())
        b = json.loads((out / r["outputs"]["json"]).read_text())
        assert [e["image_id"] for e in a] == [e["image_id"] for e in b], name
        np.testing.assert_allclose([e["keypoints"] for e in a], [e["keypoints"] for e in b], atol=1e-3)
        np.testing.assert_allclose([e["score"] for e in a], [e["score"] for e in b], atol=1e-5)
