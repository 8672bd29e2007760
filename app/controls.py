"""Live pipeline controls. Every change is emitted as ``changed(section, {key: value})`` and
applied to the running pipeline without a restart (Pipeline.update_config)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from PySide6 import QtCore, QtWidgets

from core.config import Config, choices
from core.models.catalog import installed_choices

# The smoothing slider (0..100) maps log-linearly onto SmoothingConfig.strength (>1 smooths
# more): 0 -> 0.1, 50 -> 1 (the filter's own tuning), 100 -> 10.
_STRENGTH_DECADES = 1.0


def slider_to_strength(position: int) -> float:
    return 10.0 ** (_STRENGTH_DECADES * (position - 50) / 50.0)


def strength_to_slider(strength: float) -> int:
    position = 50.0 + 50.0 * math.log10(max(float(strength), 1e-6)) / _STRENGTH_DECADES
    return int(round(min(100.0, max(0.0, position))))


@dataclass(frozen=True)
class Control:
    section: str
    key: str
    label: str
    kind: str  # choice | model | check | float | int | strength
    options: tuple = ()  # choices (read from the config's Literal types), or (min, max, step) for numbers
    group: str = ""


CONTROLS: tuple[Control, ...] = (
    # "model": the choices whose models are installed (core.models.catalog), asked at start
    Control("detector", "name", "Detector", "model", (), "Detection"),
    Control("detector", "score_threshold", "Threshold", "float", (0.05, 0.95, 0.05), "Detection"),
    Control("detector", "interval", "Detect every N frames", "int", (1, 120, 1), "Detection"),
    Control("sppe", "model", "Pose model", "model", (), "Pose"),
    Control("sppe", "decode", "Decode", "choice", choices("sppe", "decode"), "Pose"),
    Control("pose_nms", "enabled", "Pose NMS", "check", (), "Pose"),
    Control("pose_nms", "preset", "NMS preset", "choice", choices("pose_nms", "preset"), "Pose"),
    Control("refine", "enabled", "PoseFix refine", "check", (), "Pose"),
    Control("tracking", "enabled", "Tracking", "check", (), "Tracking"),
    Control("smoothing", "enabled", "Smoothing", "check", (), "Tracking"),
    Control("smoothing", "strength", "Smoothing strength", "strength", (0, 100, 1), "Tracking"),
    Control("render", "keypoint_threshold", "Keypoint score ≥", "float", (0.0, 1.0, 0.05), "Draw"),
    Control("render", "draw_ids", "Person ids", "check", (), "Draw"),
    Control("render", "draw_boxes", "Boxes", "check", (), "Draw"),
    Control("render", "draw_scores", "Scores", "check", (), "Draw"),
    Control("runtime", "device", "Device", "choice", choices("runtime", "device"), "Compute"),
)


class ControlsPanel(QtWidgets.QWidget):
    """Form of the CONTROLS table, initialised from a Config."""

    changed = QtCore.Signal(str, dict)

    def __init__(self, config: Config, cuda_available: bool, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._widgets: dict[tuple[str, str], QtWidgets.QWidget] = {}
        self._value_labels: dict[tuple[str, str], QtWidgets.QLabel] = {}
        layout = QtWidgets.QVBoxLayout(self)
        forms: dict[str, QtWidgets.QFormLayout] = {}
        for control in CONTROLS:
            if control.group not in forms:
                box = QtWidgets.QGroupBox(control.group)
                forms[control.group] = QtWidgets.QFormLayout(box)
                layout.addWidget(box)
            if control.kind == "model":
                control = replace(control, kind="choice",
                                  options=installed_choices(control.section, bool(config.sppe.weights)))
            widget = self._make(control, getattr(getattr(config, control.section), control.key))
            self._widgets[(control.section, control.key)] = widget
            forms[control.group].addRow(control.label, self._with_value_label(control, widget))
        device = self._widgets[("runtime", "device")]
        device.setEnabled(cuda_available)
        device.setToolTip("" if cuda_available else "CUDA is not available on this machine")
        refine = self._widgets[("refine", "enabled")]
        configured = config.refine.method != "none" and bool(config.refine.weights)
        refine.setEnabled(configured)
        refine.setToolTip("" if configured else "no PoseFix checkpoint configured (refine.weights / --refine-weights)")
        # The preset only matters while pose NMS runs; strength only while smoothing runs, and
        # smoothing only while tracking gives it ids (untracked poses pass through unsmoothed).
        self._link(("pose_nms", "enabled"), ("pose_nms", "preset"))
        self._link(("tracking", "enabled"), ("smoothing", "enabled"))
        self._link(("smoothing", "enabled"), ("smoothing", "strength"), ("tracking", "enabled"))
        layout.addStretch(1)

    # -- public ----------------------------------------------------------------------------------
    def widget(self, section: str, key: str) -> QtWidgets.QWidget:
        return self._widgets[(section, key)]

    def set_value(self, section: str, key: str, value: Any) -> None:
        """Set a control as the user would; emits ``changed`` when the value differs."""
        w = self._widgets[(section, key)]
        if isinstance(w, QtWidgets.QComboBox):
            w.setCurrentIndex(w.findText(str(value)))
        elif isinstance(w, QtWidgets.QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QtWidgets.QSlider):
            w.setValue(strength_to_slider(float(value)))
        else:
            w.setValue(value)

    def value(self, section: str, key: str) -> Any:
        w = self._widgets[(section, key)]
        if isinstance(w, QtWidgets.QComboBox):
            return w.currentText()
        if isinstance(w, QtWidgets.QCheckBox):
            return w.isChecked()
        if isinstance(w, QtWidgets.QSlider):
            return slider_to_strength(w.value())
        return w.value()

    # -- construction ------------------------------------------------------------------------------
    def _make(self, control: Control, current: Any) -> QtWidgets.QWidget:
        def emit(*_):
            self.changed.emit(control.section, {control.key: self.value(control.section, control.key)})

        if control.kind == "choice":
            w = QtWidgets.QComboBox()
            # Long model names ("nanodet+blazepose") must not widen the panel and pin the window's
            # minimum width: the popup still shows them whole.
            w.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            w.setMinimumContentsLength(12)
            w.addItems(list(control.options))
            if str(current) not in control.options:
                w.addItem(str(current))  # a value from a user's YAML stays visible
            w.setCurrentText(str(current))
            w.currentTextChanged.connect(emit)
        elif control.kind == "check":
            w = QtWidgets.QCheckBox()
            w.setChecked(bool(current))
            w.toggled.connect(emit)
        elif control.kind == "float":
            lo, hi, step = control.options
            w = QtWidgets.QDoubleSpinBox()
            w.setRange(lo, hi)
            w.setSingleStep(step)
            w.setDecimals(2)
            w.setValue(float(current))
            w.setKeyboardTracking(False)  # apply when the edit is finished, not per keystroke
            w.valueChanged.connect(emit)
        elif control.kind == "int":
            lo, hi, step = control.options
            w = QtWidgets.QSpinBox()
            w.setRange(lo, hi)
            w.setSingleStep(step)
            w.setValue(int(current))
            w.setKeyboardTracking(False)
            w.valueChanged.connect(emit)
        elif control.kind == "strength":
            lo, hi, step = control.options
            w = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
            w.setRange(lo, hi)
            w.setSingleStep(step)
            w.setValue(strength_to_slider(float(current)))
            w.setTracking(False)  # emit on release, so dragging does not flood the pipeline
            w.valueChanged.connect(emit)
        else:
            raise ValueError(f"unknown control kind {control.kind!r}")
        return w

    def _link(self, switch: tuple[str, str], dependent: tuple[str, str], *also: tuple[str, str]) -> None:
        """``dependent`` is enabled while ``switch`` and every ``also`` switch are checked."""
        boxes = [self._widgets[k] for k in (switch, *also)]
        target = self._widgets[dependent]

        def update(*_):
            target.setEnabled(all(b.isChecked() for b in boxes))
        update()
        for box in boxes:
            box.toggled.connect(update)

    def _with_value_label(self, control: Control, widget: QtWidgets.QWidget) -> QtWidgets.QWidget:
        """A slider shows its value beside it (e.g. "×4.0" for the smoothing strength)."""
        if not isinstance(widget, QtWidgets.QSlider):
            return widget
        row = QtWidgets.QWidget()
        layout = QtWidgets.QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        label = QtWidgets.QLabel()
        label.setMinimumWidth(label.fontMetrics().horizontalAdvance("×10.0") + 4)
        self._value_labels[(control.section, control.key)] = label

        def show(position: int) -> None:
            label.setText(f"×{slider_to_strength(position):.2g}")
        show(widget.value())
        widget.valueChanged.connect(show)
        widget.sliderMoved.connect(show)  # while dragging, before the value is applied on release
        layout.addWidget(widget, 1)
        layout.addWidget(label)
        return row

    def value_text(self, section: str, key: str) -> str:
        """The value shown beside a slider."""
        return self._value_labels[(section, key)].text()
