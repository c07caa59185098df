"""QR rendering: what a phone camera would read off the EGM screen.

Every check decodes the rendered image with zxing-cpp, an independent decoder, instead of
trusting the encoder. SVG output is rasterised by a small helper below that reads only the
SVG geometry (viewBox, rects, path commands), so it checks the document, not the renderer.
"""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET

import pytest
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from simkit import qr

SVG_NS = "{http://www.w3.org/2000/svg}"
SCAN_URL = "http://127.0.0.1:8710/scan/q1w2E3r4T5y6U7i8O9p0-_"


def scan_url(raw: bytes, base: str = "http://127.0.0.1:8710") -> str:
    """A scan URL as sim_trustly issues it: a 128-bit code in unpadded base64url."""
    code = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{base}/scan/{code}"


def decode(image: Image.Image) -> list[str]:
    """Every QR text zxing-cpp finds in `image`."""
    return [result.text for result in zxingcpp.read_barcodes(image)]


def png_image(data: str, **options: int) -> Image.Image:
    """Render `data` as PNG and open it as a consumer would, from bytes."""
    image = Image.open(io.BytesIO(qr.render_png(data, **options)))
    image.load()
    return image


# --- a minimal SVG rasteriser for the subset a QR needs -------------------------------------

_TOKEN = re.compile(r"[MmLlHhVvZz]|-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def path_polygons(d: str) -> list[list[tuple[float, float]]]:
    """Turn path data made of M/L/H/V/Z (absolute or relative) into closed polygons."""
    polygons: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    x = y = 0.0
    command = ""
    tokens = _TOKEN.findall(d)
    i = 0
    while i < len(tokens):
        if tokens[i].isalpha():
            command = tokens[i]
            i += 1
            if command in "Zz":
                if current:
                    polygons.append(current)
                    x, y = current[0]
                current = []
                continue
        relative = command.islower()
        upper = command.upper()
        if upper in "ML":
            dx, dy = float(tokens[i]), float(tokens[i + 1])
            i += 2
            x, y = (x + dx, y + dy) if relative else (dx, dy)
            if upper == "M":
                if current:
                    polygons.append(current)
                current = []
                command = "l" if relative else "L"  # implicit lineto after a moveto
        elif upper == "H":
            value = float(tokens[i])
            i += 1
            x = x + value if relative else value
        elif upper == "V":
            value = float(tokens[i])
            i += 1
            y = y + value if relative else value
        else:
            raise AssertionError(f"path command {command!r} not supported by the test rasteriser")
        current.append((x, y))
    if current:
        polygons.append(current)
    return polygons


def rasterise_svg(document: str, scale: int, page: str = "white") -> Image.Image:
    """Paint `document`'s rects and paths, `scale` pixels per viewBox unit, on a `page` colour.

    Subpaths are filled one by one, which equals the nonzero fill rule for the
    non-overlapping rectangles a QR is made of.
    """
    root = ET.fromstring(document)
    min_x, min_y, width, height = (float(v) for v in root.attrib["viewBox"].split())
    size = (round(width * scale), round(height * scale))
    image = Image.new("L", size, page)
    draw = ImageDraw.Draw(image)

    def fill_polygon(polygon: list[tuple[float, float]], fill: str) -> None:
        points = [((x - min_x) * scale, (y - min_y) * scale) for x, y in polygon]
        # PIL paints the far edge's pixels too; pull the far edges in by one pixel so a
        # unit square covers exactly `scale` x `scale` pixels.
        far_x = max(x for x, _ in points)
        far_y = max(y for _, y in points)
        draw.polygon([(x - (x == far_x), y - (y == far_y)) for x, y in points], fill=fill)

    for element in root.iter():
        fill = element.attrib.get("fill", "black")
        if element.tag == f"{SVG_NS}rect":
            left, top = float(element.attrib.get("x", 0)), float(element.attrib.get("y", 0))
            right = left + float(element.attrib["width"])
            bottom = top + float(element.attrib["height"])
            fill_polygon([(left, top), (right, top), (right, bottom), (left, bottom)], fill)
        elif element.tag == f"{SVG_NS}path":
            for polygon in path_polygons(element.attrib["d"]):
                fill_polygon(polygon, fill)
    return image


def assert_quiet_zone(image: Image.Image, modules: int, box: int) -> None:
    """Exactly `modules` modules of white around the symbol: white outside, dark corner inside."""
    gray = image.convert("L")
    width, height = gray.size
    margin = modules * box
    for x in range(width):
        for y in range(height):
            inside = margin <= x < width - margin and margin <= y < height - margin
            if not inside:
                assert gray.getpixel((x, y)) == 255, f"quiet zone pixel {(x, y)} is not white"
    # Three finder patterns start right at the quiet zone's inner edge: no extra margin.
    assert gray.getpixel((margin, margin)) == 0
    assert gray.getpixel((width - margin - 1, margin)) == 0
    assert gray.getpixel((margin, height - margin - 1)) == 0


# --- PNG ---------------------------------------------------------------------------------------


def test_png_decodes_to_exactly_the_scan_url() -> None:
    assert decode(png_image(SCAN_URL)) == [SCAN_URL]


@settings(max_examples=30, deadline=None)
@given(raw=st.binary(min_size=16, max_size=16), port=st.integers(1024, 65535))
def test_png_of_any_issued_scan_url_decodes_back_to_it(raw: bytes, port: int) -> None:
    url = scan_url(raw, base=f"http://127.0.0.1:{port}")
    assert decode(png_image(url)) == [url]


def test_png_keeps_a_four_module_white_quiet_zone() -> None:
    assert_quiet_zone(png_image(SCAN_URL, box_size=3), modules=4, box=3)


def test_png_honours_a_wider_border_and_box_size() -> None:
    image = png_image(SCAN_URL, box_size=5, border=6)
    assert_quiet_zone(image, modules=6, box=5)
    assert decode(image) == [SCAN_URL]


def test_png_is_a_square_of_whole_modules() -> None:
    image = png_image(SCAN_URL, box_size=1)
    width, height = image.size
    assert width == height
    symbol = width - 2 * qr.MIN_BORDER
    assert (symbol - 17) % 4 == 0, "a QR symbol is 17 + 4*version modules wide"


def test_realistic_scan_url_stays_a_small_symbol() -> None:
    """About 50-80 characters at level M must stay small enough for a glance-and-scan."""
    long_base = "https://trustly-sim.casino-floor.example.com:8710"
    for url in (SCAN_URL, scan_url(b"\xff" * 16, base=long_base)):
        symbol = png_image(url, box_size=1).size[0] - 2 * qr.MIN_BORDER
        assert symbol <= 37, f"{url} needs a {symbol}-module symbol"


def test_longest_accepted_data_still_decodes() -> None:
    data = "http://127.0.0.1:8710/scan/" + "A" * (qr.MAX_DATA_BYTES - 27)
    assert len(data.encode()) == qr.MAX_DATA_BYTES
    assert decode(png_image(data, box_size=4)) == [data]


# --- SVG ---------------------------------------------------------------------------------------


def test_svg_is_a_standalone_xml_document_with_size_and_viewbox() -> None:
    root = ET.fromstring(qr.render_svg(SCAN_URL))
    assert root.tag == f"{SVG_NS}svg"
    _, _, width, height = (float(v) for v in root.attrib["viewBox"].split())
    assert width == height
    assert float(root.attrib["width"]) == float(root.attrib["height"]) > 0
    background = root.find(f"{SVG_NS}rect")
    assert background is not None
    assert background.attrib["fill"].lower() in {"#ffffff", "#fff", "white"}
    assert float(background.attrib["width"]) == width
    assert float(background.attrib["height"]) == height


def test_svg_decodes_to_exactly_the_scan_url() -> None:
    assert decode(rasterise_svg(qr.render_svg(SCAN_URL), scale=6)) == [SCAN_URL]


@settings(max_examples=20, deadline=None)
@given(raw=st.binary(min_size=16, max_size=16))
def test_svg_of_any_issued_scan_url_decodes_back_to_it(raw: bytes) -> None:
    url = scan_url(raw)
    assert decode(rasterise_svg(qr.render_svg(url), scale=4)) == [url]


def test_svg_decodes_even_on_a_black_page() -> None:
    image = rasterise_svg(qr.render_svg(SCAN_URL), scale=6, page="black")
    assert decode(image) == [SCAN_URL]


def test_svg_keeps_a_four_module_white_quiet_zone() -> None:
    assert_quiet_zone(rasterise_svg(qr.render_svg(SCAN_URL), scale=2), modules=4, box=2)


def test_svg_and_png_draw_the_same_modules() -> None:
    from_svg = rasterise_svg(qr.render_svg(SCAN_URL), scale=1)
    from_png = png_image(SCAN_URL, box_size=1).convert("L")
    assert from_svg.size == from_png.size
    assert from_svg.tobytes() == from_png.tobytes()


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("render", [qr.render_png, qr.render_svg])
def test_empty_data_is_refused(render: object) -> None:
    with pytest.raises(ValueError, match="empty"):
        render("")  # type: ignore[operator]


@pytest.mark.parametrize("render", [qr.render_png, qr.render_svg])
def test_oversized_data_is_refused(render: object) -> None:
    with pytest.raises(ValueError, match="at most"):
        render("h" * (qr.MAX_DATA_BYTES + 1))  # type: ignore[operator]


def test_size_limit_counts_utf8_bytes_not_characters() -> None:
    with pytest.raises(ValueError, match="at most"):
        qr.render_png("\u00e9" * (qr.MAX_DATA_BYTES // 2 + 1))


@pytest.mark.parametrize("border", [0, 3])
def test_quiet_zone_below_the_standard_minimum_is_refused(border: int) -> None:
    with pytest.raises(ValueError, match="border"):
        qr.render_png(SCAN_URL, border=border)
    with pytest.raises(ValueError, match="border"):
        qr.render_svg(SCAN_URL, border=border)


def test_box_size_below_one_pixel_is_refused() -> None:
    with pytest.raises(ValueError, match="box_size"):
        qr.render_png(SCAN_URL, box_size=0)


def test_symbols_are_encoded_at_error_correction_level_m() -> None:
    (result,) = zxingcpp.read_barcodes(png_image(SCAN_URL))
    assert result.ec_level == qr.ERROR_CORRECTION == "M"


def test_non_ascii_text_round_trips_as_utf8() -> None:
    url = "http://127.0.0.1:8710/scan/caf\u00e9"
    assert decode(png_image(url)) == [url]
