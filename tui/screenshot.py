"""Save an SVG screenshot of the inspector on a capture (the README's docs/tui.svg).

python -m tui.screenshot tests/data/tcpdump/mptcp-v0.pcap docs/tui.svg [--size 120x40] [--keys down,down,enter]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from tui.app import MptcpInspector

DEFAULT_KEYS = "down,down,down,enter,down,down,down,down,down,down,down,down,down,down,down,down"


async def screenshot(trace: str, out: Path, size: tuple[int, int], keys: list[str]) -> None:
    app = MptcpInspector(trace)
    async with app.run_test(size=size) as pilot:
        while not app.session.loaded and app.load_error is None:
            await pilot.pause(0.05)
        await app.workers.wait_for_complete()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        out.parent.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(filename=out.name, path=str(out.parent))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("trace")
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="120x40", help="COLUMNSxROWS")
    parser.add_argument("--keys", default=DEFAULT_KEYS, help="comma-separated keys to press first")
    args = parser.parse_args(argv)
    columns, rows = (int(v) for v in args.size.split("x"))
    keys = [k for k in args.keys.split(",") if k]
    asyncio.run(screenshot(args.trace, args.out, (columns, rows), keys))


if __name__ == "__main__":
    main()
