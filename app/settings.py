"""App settings persisted between runs as YAML in the user config dir (platformdirs).

Holds the live-control overrides of the pipeline config, the last source (reopened at launch),
loop, every-frame playback, the recording folder (chosen by the user) and the window geometry.
A damaged or stale file never stops the app: unreadable files and unknown keys are dropped with
a warning.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import yaml
from platformdirs import user_config_dir

from core.config import Config
from core.errors import UserError

log = logging.getLogger("rmpe.app")

DEFAULTS: dict[str, Any] = {
    "config": {},  # section -> {key: value}, applied over Config.load()
    "source": None,  # {"kind": file|camera|images|url, "value": ...}
    "loop": True,
    "every_frame": False,  # files: process every frame (file mode) instead of playing in real time
    "perf_window_s": 30,
    "record_dir": None,
    "geometry": None,  # hex of QMainWindow.saveGeometry()
    "window_state": None,  # hex of QMainWindow.saveState(): docks and toolbar
}


def settings_path() -> Path:
    """$RMPE_LIVE_CONFIG_DIR/app.yaml, else the platform's user config dir (XDG on Linux)."""
    root = os.environ.get("RMPE_LIVE_CONFIG_DIR") or user_config_dir("rmpe-live", appauthor=False)
    return Path(root) / "app.yaml"


class Settings:
    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else settings_path()
        self.data: dict[str, Any] = copy.deepcopy(DEFAULTS)

    def load(self) -> "Settings":
        if not self.path.is_file():
            return self
        try:
            with open(self.path, encoding="utf-8") as f:
                stored = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as exc:
            log.warning("ignoring unreadable settings %s: %s", self.path, str(exc).splitlines()[0])
            return self
        if not isinstance(stored, dict):
            log.warning("ignoring settings %s: not a mapping", self.path)
            return self
        for key, value in stored.items():
            if key in DEFAULTS:
                self.data[key] = value
        if not isinstance(self.data["config"], dict):
            self.data["config"] = {}
        return self

    def save(self) -> None:
        """Write atomically so a crash mid-write never leaves a half file behind."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        from core.fileio import atomic_write_text

        atomic_write_text(self.path, yaml.safe_dump(self.data, sort_keys=True))

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in DEFAULTS:
            raise KeyError(key)
        self.data[key] = value

    def remember(self, section: str, **values: Any) -> None:
        """Record a live control change so the next run starts with it."""
        self.data["config"].setdefault(section, {}).update(values)

    def apply_to(self, config: Config) -> Config:
        """Apply stored overrides key by key; stale keys (renamed between versions) are dropped."""
        clean: dict[str, dict] = {}
        for section, values in self.data["config"].items():
            if not isinstance(values, dict) or not hasattr(config, section):
                log.warning("settings: dropping unknown config section %r", section)
                continue
            names = {f.name for f in dataclasses.fields(getattr(config, section))}
            for key, value in values.items():
                if key not in names:
                    log.warning("settings: dropping unknown config key %s.%s", section, key)
                    continue
                try:
                    config.update({section: {key: value}})
                except UserError as exc:
                    log.warning("settings: %s", exc)
                    continue
                clean.setdefault(section, {})[key] = value
        self.data["config"] = clean
        return config
