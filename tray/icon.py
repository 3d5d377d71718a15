"""The tray icon, drawn with Pillow.

Three looks, by state, each a rounded badge with a dark rim so it stands out on
light panels, filled with a saturated colour that stands out on dark ones:

- "loopback": green, a white bell: only this machine can connect to anything;
- "exposed": amber, a black bell ringing: something is reachable from the network;
- "alert": red, the count of alerts not yet seen in white (1-9, then "9+").

Shapes are drawn four times over and reduced (smooth curves), with straight
edges on the pixel grid; the count uses a pixel font scaled by whole numbers,
so digits stay sharp from 16 to 64 px.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

STATES = ("loopback", "exposed", "alert")
RIM = (24, 24, 24, 255)
FILL = {
    "loopback": (46, 139, 87, 255),
    "exposed": (232, 145, 0, 255),
    "alert": (235, 45, 55, 255),
}
GLYPH = {
    "loopback": (255, 255, 255, 255),
    "exposed": (20, 20, 20, 255),
    "alert": (255, 255, 255, 255),
}
SS = 4  # supersampling factor for curves

# A 3x5 pixel font for the count.
FONT = {
    "0": ("111", "101", "101", "101", "111"),
    "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"),
    "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"),
    "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"),
    "+": ("000", "010", "111", "010", "000"),
}


def count_text(count: int) -> str:
    return str(count) if count <= 9 else "9+"


def rim_width(size: int) -> int:
    return max(1, round(size / 20))


def corner_radius(size: int) -> int:
    return max(2, round(size * 0.22))


def draw(state: str, count: int = 0, size: int = 64) -> Image.Image:
    """The icon for a state, `size` pixels square, RGBA."""
    if state not in STATES:
        raise ValueError(f"unknown icon state {state!r}")
    if not 16 <= size <= 256:
        raise ValueError("icon size must be 16 to 256 pixels")
    big = Image.new("RGBA", (size * SS, size * SS), (0, 0, 0, 0))
    d = ImageDraw.Draw(big)
    rim = rim_width(size) * SS
    radius = corner_radius(size) * SS
    d.rounded_rectangle((0, 0, size * SS - 1, size * SS - 1), radius=radius, fill=RIM)
    d.rounded_rectangle((rim, rim, size * SS - 1 - rim, size * SS - 1 - rim), radius=max(SS, radius - rim), fill=FILL[state])
    if state != "alert":
        _bell(d, size * SS / 64, GLYPH[state], ringing=state == "exposed" and size >= 32)  # waves: noise when small
    image = big.resize((size, size), Image.Resampling.BOX)
    if state == "alert":
        _count(image, count_text(max(1, count)), GLYPH[state])
    return image


def _bell(d: ImageDraw.ImageDraw, f: float, colour, ringing: bool) -> None:
    """A bell in a 64-unit square, scaled by f."""

    def box(x0, y0, x1, y1):
        return (x0 * f, y0 * f, x1 * f, y1 * f)

    d.ellipse(box(28, 6, 36, 14), fill=colour)  # knob
    d.ellipse(box(19, 10, 45, 36), fill=colour)  # dome
    d.polygon([(19 * f, 23 * f), (45 * f, 23 * f), (48 * f, 41 * f), (53 * f, 46 * f), (11 * f, 46 * f), (16 * f, 41 * f)], fill=colour)
    d.rounded_rectangle(box(9, 43, 55, 50), radius=2 * f, fill=colour)  # lip
    d.ellipse(box(26, 48, 38, 57), fill=colour)  # clapper
    if ringing:
        width = max(1, round(3.5 * f))
        for x0, x1, start, end in ((5, 17, 115, 245), (47, 59, 295, 65)):
            d.arc(box(x0, 14, x1, 42), start, end, fill=colour, width=width)


def _count(image: Image.Image, text: str, colour) -> None:
    """The count in the pixel font, at the largest whole scale that fits, centred."""
    size = image.width
    inner = size - 2 * rim_width(size) - 2
    cols = 4 * len(text) - 1  # 3 columns a glyph, 1 between
    scale = max(1, min(int(size * 0.7) // 5, inner // cols))
    width, height = cols * scale, 5 * scale
    x0, y0 = (size - width) // 2, (size - height) // 2
    px = image.load()
    for i, ch in enumerate(text):
        for row, bits in enumerate(FONT[ch]):
            for col, bit in enumerate(bits):
                if bit == "1":
                    for dy in range(scale):
                        for dx in range(scale):
                            px[x0 + (4 * i + col) * scale + dx, y0 + row * scale + dy] = colour


def sheet(sizes=(16, 22, 24, 32, 48, 64), count: int = 3) -> Image.Image:
    """Every state at every size, on a light and a dark panel (for the README)."""
    pad = 8
    width = sum(sizes) + pad * (len(sizes) + 1)
    row_h = max(sizes) + pad * 2
    out = Image.new("RGBA", (width, row_h * 2 * len(STATES)), (0, 0, 0, 255))
    y = 0
    for background in ((240, 240, 240, 255), (40, 40, 40, 255)):
        for state in STATES:
            out.paste(Image.new("RGBA", (width, row_h), background), (0, y))
            x = pad
            for s in sizes:
                img = draw(state, count, s)
                out.alpha_composite(img, (x, y + (row_h - s) // 2))
                x += s + pad
            y += row_h
    return out
