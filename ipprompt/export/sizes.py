"""Page sizes and resolutions the exporter offers; no imports, so the CLI can show them cheaply."""

from __future__ import annotations

# Trim sizes in inches. "comic" is the US comic book (6 5/8 x 10 1/4 in), what comic readers and
# print-on-demand shops expect, so it is the default.
PAGE_SIZES: dict[str, tuple[float, float]] = {
    "comic": (6.625, 10.25),
    "a4": (210 / 25.4, 297 / 25.4),
    "letter": (8.5, 11.0),
}
DEFAULT_PAGE_SIZE = "comic"
# 150 dpi reads well on screens and tablets and keeps a PDF small; 300 is for print.
DEFAULT_DPI = 150
MIN_DPI, MAX_DPI = 72, 600  # below 72 lettering is unreadable; above 600 a page is ~100 MB in memory
