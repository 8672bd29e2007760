"""The PoseFix on/off control: usable only while a refiner is configured; it toggles refine.enabled."""
from __future__ import annotations

import pytest

from core.config import Config


@pytest.mark.parametrize("refine, usable", [
    ({}, False),
    ({"method": "posefix"}, False),  # no checkpoint
    ({"method": "posefix", "weights": "runs/posefix/best.pt"}, True),
])
def test_refine_switch(qapp, refine, usable):
    from app.controls import ControlsPanel

    panel = ControlsPanel(Config.load(overrides={"refine": refine} if refine else None), cuda_available=False)
    assert panel.widget("refine", "enabled").isEnabled() == usable
    seen = []
    panel.changed.connect(lambda s, v: seen.append((s, v)))
    panel.set_value("refine", "enabled", False)
    assert seen[-1] == ("refine", {"enabled": False})
