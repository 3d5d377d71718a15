"""Regenerate the application icons in packaging/icons/ from the tray's drawing. Imports:
portbell.tray.icon (Pillow).

    python -m portbell.packaging.make_icons [OUT_DIR]

One source of truth: the app icon is the tray icon's calm look ("loopback": a white bell on
green), drawn by `portbell.tray.icon.draw`, never redrawn here. Sizes the tray's drawing does not
accept (it stops at 256 px) are scaled up from the largest one it does. The results are committed
so a checkout has them without Pillow at build time; tests/test_packaging.py regenerates them and
compares pixels, so they cannot drift from the drawing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from portbell.tray import icon

STATE = "loopback"
PNG_SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)  # Windows takes at most 256
ICNS_SIZES = (32, 64, 128, 256, 512, 1024)  # what Pillow's ICNS writer stores; 16 is not among them
HERE = Path(__file__).resolve().parent


def picture(size: int) -> Image.Image:
    """The icon at `size` px: drawn by the tray's code, or scaled up from its largest drawing."""
    base = size
    while True:
        try:
            image = icon.draw(STATE, size=base)
            break
        except ValueError:
            if base <= 16:
                raise
            base //= 2
    return image if base == size else image.resize((size, size), Image.Resampling.LANCZOS)


def build(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for size in PNG_SIZES:
        path = out / f"portbell-{size}.png"
        picture(size).save(path, optimize=False)
        written.append(path)
    ico = [picture(s) for s in ICO_SIZES]
    path = out / "portbell.ico"
    ico[-1].save(path, sizes=[(s, s) for s in ICO_SIZES], append_images=ico[:-1])
    written.append(path)
    icns = [picture(s) for s in ICNS_SIZES]
    path = out / "portbell.icns"
    icns[-1].save(path, append_images=icns[:-1])
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else HERE / "icons"
    for path in build(out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
