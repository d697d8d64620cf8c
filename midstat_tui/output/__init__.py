"""The headless faces: --plain, --json, --events, --summary."""
