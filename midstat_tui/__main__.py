"""The `midstat` command (and `python -m midstat_tui`)."""

from midstat_tui import early_signals


def run() -> int:
    early_signals.hold()  # before the imports: a Ctrl-C while they run stops the run cleanly, not with a traceback
    from midstat_tui.cli import main

    return main()


if __name__ == "__main__":
    raise SystemExit(run())
