#!/usr/bin/env python3
"""Write the README's screenshots (SVG, exported by Textual) of the main screen, a filtered view and a flow.

    python3 scripts/screenshots.py    # -> docs/screenshots/*.svg
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import FIXTURES  # noqa: E402
from tests.ui.conftest import MIXED, make_app  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


def _checkpoint(name: str) -> float | None:
    doc = FIXTURES / f"{name}.json"
    return json.loads(doc.read_text())["checkpoints"][-1]["ts"] if doc.exists() else None


async def shoot(path, name: str, keys: tuple[str, ...], size=(110, 30)) -> None:
    """The app over a finished replay, moved back to the capture's last quiet moment, after `keys`."""
    app = make_app(path)
    async with app.run_test(size=size) as pilot:
        moment = _checkpoint(path.stem)
        if moment is not None:
            app.session.toggle_pause()
            app.session.seek(moment)
            while app.session.position != moment:
                await asyncio.sleep(0.01)
            app.tick()
        await pilot.press(*keys)
        await pilot.pause()
        app.save_screenshot(filename=f"{name}.svg", path=str(OUT))


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    await shoot(MIXED, "main", ())
    await shoot(MIXED, "filtered", ("slash", *"dport 6001 and not ended", "enter"))
    await shoot(FIXTURES / "simultaneous_close.pcap", "flow", ("enter",))
    await shoot(MIXED, "help", ("question_mark",))


if __name__ == "__main__":
    asyncio.run(main())
