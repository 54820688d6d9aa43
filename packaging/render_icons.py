"""Renders resources/icons/penwright.svg to the PNG sizes desktops look for (run from the repo root)."""

from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

app = QGuiApplication([])
renderer = QSvgRenderer("resources/icons/penwright.svg")
for size in (16, 24, 32, 48, 64, 128, 256, 512):
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(QColor(0, 0, 0, 0))
    painter = QPainter(image)
    renderer.render(painter)
    painter.end()
    image.save(f"resources/icons/penwright-{size}.png")
print("ok")
