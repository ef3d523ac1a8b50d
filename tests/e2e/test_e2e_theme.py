"""Warnings stay readable in dark mode (issue 12, item 7).

The status line's warnings (``#status blockquote``) had a hard-coded light
background: in dark mode gradio's text turns light, so the warning was light
on light. The page now takes every colour from the theme's variables. In a
real browser, in dark and in light mode (``prefers-color-scheme``, which gradio
follows), a warning is made to appear and the WCAG contrast ratio of each of
its text elements against the background actually behind it (semi-transparent
layers composited up to the first opaque one) must reach 4.5:1 (WCAG AA).
"""

from __future__ import annotations

import pytest
from browser import chromium_page
from playwright.sync_api import expect
from ui_driver import UiDriver

pytestmark = pytest.mark.e2e
WARNING_TEXT = "#status blockquote, #status blockquote *"

#: for each element: its text colour and the colour really behind it, as [r, g, b] (0..255)
COLOURS_JS = """
(elements) => {
  const parse = (value) => {  // rgb(a) from plain colours, color(srgb ...) from color-mix()
    const m = value.match(/^(rgba?|color)\\((?:srgb\\s+)?([^)]+)\\)$/);
    if (!m) throw new Error(`unexpected colour format: ${value}`);
    const p = m[2].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    const scale = m[1] === "color" ? 255 : 1;
    return [p[0] * scale, p[1] * scale, p[2] * scale, p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3]));
  const behind = (element) => {
    const layers = [];
    for (let node = element; node; node = node.parentElement) {
      const colour = parse(getComputedStyle(node).backgroundColor);
      if (colour[3] > 0) layers.push(colour);
      if (colour[3] >= 1) break;
    }
    let result = [255, 255, 255];  // the canvas behind everything
    for (const layer of layers.reverse()) result = over(layer, result);
    return result;
  };
  return elements.filter((e) => e.textContent.trim()).map((element) => {
    const background = behind(element);
    return {tag: element.tagName, text: parse(getComputedStyle(element).color), background};
  }).map(({tag, text, background}) => ({tag, text: over(text, background), background}));
}
"""


def luminance(rgb: list[float]) -> float:
    """WCAG 2 relative luminance of an sRGB colour."""
    channels = [c / 255 for c in rgb]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: list[float], b: list[float]) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_contrast_helper_matches_wcag():
    assert contrast([0, 0, 0], [255, 255, 255]) == pytest.approx(21.0)
    assert contrast([118, 118, 118], [255, 255, 255]) == pytest.approx(4.54, abs=0.01)  # #767676, the AA edge
    assert contrast([248, 250, 252], [255, 251, 235]) < 1.1  # light text on the old light background


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_status_warnings_are_readable(scheme, recorded_app, artifacts_dir):
    with chromium_page(1300, 900, color_scheme=scheme) as page:
        ui = UiDriver(page, recorded_app, artifacts_dir).open()
        # gradio follows the browser's preference: the page really is in that mode
        dark = page.evaluate("() => document.body.classList.contains('dark')")
        assert dark is (scheme == "dark")
        ui.run_expecting_warning("No image yet")
        expect(page.locator("#status blockquote")).to_contain_text("No image yet")
        colours = page.locator(WARNING_TEXT).evaluate_all(COLOURS_JS)
        assert colours, "no warning text found in the status line"
        for element in colours:
            ratio = contrast(element["text"], element["background"])
            assert ratio >= 4.5, f"{scheme}: <{element['tag']}> text {element['text']} on {element['background']}"
        page.locator("#status").screenshot(path=str(artifacts_dir / f"status-warning-{scheme}.png"))
