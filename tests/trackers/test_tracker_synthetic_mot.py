"""Identity keeping on synthetic sequences, counted with CLEAR-MOT (see synthetic.py).

Clean crossings and occlusions of 10-30 frames must cause no identity switch with any distance;
noisy crowds (keypoint/box noise, dropouts, false positives) are held to a small switch rate.
`python bench/bench_trackers.py` prints the same figures as a table.
"""
from __future__ import annotations

import pytest

from core.config import TrackingConfig
from core.skeleton import BLAZEPOSE33, COCO17
from trackers import PoseTracker
from trackers.distances import DISTANCES


def run(synthetic, frames, **cfg):
    return synthetic.run_tracker(PoseTracker(TrackingConfig(**cfg), 30.0), frames)


def assert_no_switch(mot):
    s = mot.summary()
    assert s["idsw"] == 0 and s["ids_per_person"] == 1.0, s
    assert s["fn"] == 0 and s["fp"] == 0, s  # every detection came out with a box that matches


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("layout", [COCO17, BLAZEPOSE33])
@pytest.mark.parametrize("dy", [0, 30])  # same depth (paths cross exactly) or one behind the other
def test_clean_crossing(synthetic, distance, layout, dy):
    people = [synthetic.Walker(300, 500, 8, 0, 300), synthetic.Walker(1500, 500 + dy, -8, 0, 330)]
    frames = synthetic.make_sequence(people, 150, layout=layout)
    assert_no_switch(run(synthetic, frames, distance=distance))


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("hidden", [10, 20, 30])
def test_occlusion_keeps_the_id(synthetic, distance, hidden):
    """A walker vanishes behind something for `hidden` frames (30 = 1 s) next to a standing person."""
    people = [synthetic.Walker(200, 500, 8, 0, 300, hidden=[(50, 50 + hidden)]),
              synthetic.Walker(900, 600, 0, 0, 350)]
    assert_no_switch(run(synthetic, synthetic.make_sequence(people, 150), distance=distance))


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("hidden", [10, 20, 30])
def test_occluded_while_crossing(synthetic, distance, hidden):
    """The person further back is not detected while the other walks in front of them."""
    people = [synthetic.Walker(300, 500, 8, 0, 300),
              synthetic.Walker(1500, 530, -8, 0, 330, hidden=[(75 - hidden // 2, 75 + hidden - hidden // 2)])]
    assert_no_switch(run(synthetic, synthetic.make_sequence(people, 150), distance=distance))


def test_occlusion_beyond_max_age_gives_a_new_id(synthetic):
    """The check above can fail: with a 0.3 s memory the walker comes back as someone new."""
    people = [synthetic.Walker(200, 500, 8, 0, 300, hidden=[(50, 70)])]
    mot = run(synthetic, synthetic.make_sequence(people, 150), max_age_s=0.3)
    assert mot.idsw == 1


NOISE = {
    "noise": dict(kp_noise=0.02, box_noise=0.02),
    "noise+dropout": dict(kp_noise=0.02, box_noise=0.02, dropout=0.05),
    "noise+dropout+fp": dict(kp_noise=0.03, box_noise=0.03, dropout=0.1, fp_rate=0.1),
}


@pytest.mark.parametrize("level", NOISE)
def test_noisy_crowds(synthetic, level):
    """Six people crossing paths, each occluded once for 10-30 frames, three seeds. Detection
    errors (FN, FP) are the detector's; the tracker may add at most 0.2% identity switches."""
    total = {"gt": 0, "fn": 0, "fp": 0, "idsw": 0}
    for seed in range(3):
        frames = synthetic.make_sequence(synthetic.crowd(6, 240, seed), 240, seed=seed, **NOISE[level])
        s = run(synthetic, frames).summary()
        for k in total:
            total[k] += s[k]
    mota = 1 - (total["fn"] + total["fp"] + total["idsw"]) / total["gt"]
    print(f"\n{level}: {total} MOTA {mota:.4f}")
    assert total["idsw"] <= 0.002 * total["gt"], total
