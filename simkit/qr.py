"""QR rendering: the one place where a URL becomes a QR code, as PNG bytes or an SVG document.

Both sims render through here (the CMS's EGM screen and any other page that shows a QR), so a
change of error-correction level or quiet zone changes every QR the project shows, and the
harness's "QR decodes to `url`" check tests the same code the EGM screen uses.

Error correction is level M (`ERROR_CORRECTION`): a scan URL of 60-80 characters stays a small
symbol, and M's 15% recovery survives a scuffed EGM glass or phone glare better than L's 7%.
The quiet zone is at least 4 modules, the QR standard's minimum.

The symbol (version, mask) is computed once per distinct text and cached, because an EGM
screen asks for the same QR many times during its lifetime and the mask search is the costly
part. Drawing is then a single image resize (PNG) or one path of horizontal runs (SVG).
"""

from __future__ import annotations

import io
from functools import lru_cache
from xml.sax.saxutils import quoteattr

import qrcode
import qrcode.constants
from PIL import Image

# Level M restores about 15% of damaged codewords. Our URLs (about 60-80 ASCII characters)
# still fit a small version (about 25x25 to 33x33 modules) at M, so modules stay large on an
# EGM screen, while M survives a scuffed cabinet glass or phone glare that L (7%) may not.
# Q and H would grow the symbol for little gain on a lit screen read at arm's length.
ERROR_CORRECTION = "M"
# The quiet zone the QR standard (ISO/IEC 18004) requires; scanners fail more often below it.
MIN_BORDER = 4
# Well under the version-40 capacity at level M (2,331 bytes), and far above any real URL.
MAX_DATA_BYTES = 1024
# Pixel size of one module in the SVG's width/height; viewBox units are modules, so CSS can
# scale the drawing freely without blurring.
SVG_MODULE_PX = 8

_LEVELS = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}

Modules = tuple[tuple[bool, ...], ...]


def render_png(data: str, *, box_size: int = 8, border: int = MIN_BORDER) -> bytes:
    """Return `data` as a black-on-white PNG QR code, `box_size` pixels per module.

    The image is 1-bit grayscale: the smallest PNG, and exact module edges for decoders.
    Raises ValueError for empty or oversized data, `box_size < 1` or `border < 4`.
    """
    if box_size < 1:
        raise ValueError("box_size must be at least 1 pixel")
    modules = _modules(_checked(data))
    _check_border(border)
    size = len(modules) + 2 * border
    # "1" mode: 0 is black. Start white, paste the symbol at (border, border), then scale.
    image = Image.new("1", (size, size), 1)
    symbol = Image.new("1", (len(modules), len(modules)))
    symbol.putdata([0 if dark else 1 for row in modules for dark in row])
    image.paste(symbol, (border, border))
    if box_size > 1:
        image = image.resize((size * box_size, size * box_size), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def render_svg(data: str, *, border: int = MIN_BORDER) -> str:
    """Return `data` as a standalone SVG document: a white background rect and one black path.

    A path of horizontal runs is far smaller than one rect per module, needs no PIL, and the
    explicit white background keeps the code decodable on a dark page.
    Raises ValueError for empty or oversized data or `border < 4`.
    """
    modules = _modules(_checked(data))
    _check_border(border)
    size = len(modules) + 2 * border
    pixels = size * SVG_MODULE_PX
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{pixels}" height="{pixels}" '
        f'viewBox="0 0 {size} {size}" shape-rendering="crispEdges">'
        f'<rect x="0" y="0" width="{size}" height="{size}" fill="#ffffff"/>'
        f'<path fill="#000000" d={quoteattr(_path_data(modules, border))}/>'
        "</svg>\n"
    )


def _checked(data: str) -> str:
    """Return `data` if it is a non-empty str of at most MAX_DATA_BYTES in UTF-8."""
    if not isinstance(data, str):
        raise ValueError("QR data must be a str")
    if not data:
        raise ValueError("QR data must not be empty")
    try:
        encoded = data.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("QR data must be valid Unicode text") from exc
    if len(encoded) > MAX_DATA_BYTES:
        raise ValueError(f"QR data must be at most {MAX_DATA_BYTES} bytes in UTF-8")
    return data


def _check_border(border: int) -> None:
    """Refuse a quiet zone narrower than the standard's minimum."""
    if border < MIN_BORDER:
        raise ValueError(f"border must be at least {MIN_BORDER} modules (the QR quiet zone)")


@lru_cache(maxsize=256)
def _modules(data: str) -> Modules:
    """Return the symbol's dark/light modules, without quiet zone, for `data` (cached)."""
    code = qrcode.QRCode(error_correction=_LEVELS[ERROR_CORRECTION], border=0)
    code.add_data(data)
    code.make(fit=True)
    return tuple(tuple(bool(dark) for dark in row) for row in code.get_matrix())


def _path_data(modules: Modules, border: int) -> str:
    """Return SVG path data drawing each horizontal run of dark modules as one rectangle."""
    parts: list[str] = []
    for y, row in enumerate(modules):
        x = 0
        while x < len(row):
            if not row[x]:
                x += 1
                continue
            start = x
            while x < len(row) and row[x]:
                x += 1
            parts.append(f"M{start + border} {y + border}h{x - start}v1h-{x - start}z")
    return "".join(parts)
