#!/usr/bin/env python3
"""Write the README's screenshots (SVG, exported by Textual) of the main screen, a filtered view and a flow.

    python3 scripts/screenshots.py    # -> docs/screenshots/*.svg
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import FIXTURES  # noqa: E402
from tests.ui.conftest import ALEXA, make_app  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


async def shoot(path, name: str, keys: tuple[str, ...], size=(110, 30)) -> None:
    app = make_app(path)
    async with app.run_test(size=size) as pilot:
        await pilot.press(*keys)
        await pilot.pause()
        app.save_screenshot(filename=f"{name}.svg", path=str(OUT))


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    await shoot(ALEXA, "main", ())
    await shoot(ALEXA, "filtered", ("slash", *"dport 443 and not ended", "enter"))
    await shoot(FIXTURES / "simultaneous_close.pcap", "flow", ("enter",))
    await shoot(ALEXA, "help", ("question_mark",))


if __name__ == "__main__":
    asyncio.run(main())
