"""The Textual face: one module per screen or widget, over the engine's session and the core view model."""
