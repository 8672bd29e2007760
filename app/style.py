"""Dark Fusion look: the video and the plots sit on dark backgrounds, so the chrome does too."""
from __future__ import annotations

from PySide6 import QtGui, QtWidgets


def apply_style(app: QtWidgets.QApplication) -> None:
    app.setStyle("Fusion")
    p = QtGui.QPalette()
    role, color = QtGui.QPalette.ColorRole, QtGui.QColor
    for r, c in ((role.Window, "#202124"), (role.WindowText, "#e8eaed"), (role.Base, "#17181a"),
                 (role.AlternateBase, "#2a2b2e"), (role.ToolTipBase, "#2a2b2e"), (role.ToolTipText, "#e8eaed"),
                 (role.Text, "#e8eaed"), (role.Button, "#2d2e31"), (role.ButtonText, "#e8eaed"),
                 (role.BrightText, "#ff5555"), (role.Highlight, "#3d7bd9"), (role.HighlightedText, "#ffffff"),
                 (role.PlaceholderText, "#8a8d91")):
        p.setColor(r, color(c))
    p.setColor(QtGui.QPalette.ColorGroup.Disabled, role.Text, color("#6b6e72"))
    p.setColor(QtGui.QPalette.ColorGroup.Disabled, role.ButtonText, color("#6b6e72"))
    p.setColor(QtGui.QPalette.ColorGroup.Disabled, role.WindowText, color("#6b6e72"))
    app.setPalette(p)
