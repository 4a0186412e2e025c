"""Files an attacker uploads: valid images (they pass validation) that carry a script."""
from __future__ import annotations

import io

from PIL import Image, PngImagePlugin

# Sets a global and the page title if a browser ever runs it.
SCRIPT = "<script>window.hvPwned = 1; document.title = 'pwned'</script>"


def png_with_script(color=(200, 100, 150)) -> bytes:
    """A 32×32 PNG whose text chunk is an HTML page with a script (and an SVG with one)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", f"<html><body>{SCRIPT}</body></html>")
    info.add_text("Description", f'<svg xmlns="http://www.w3.org/2000/svg" onload="window.hvPwned = 2">{SCRIPT}</svg>')
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()
