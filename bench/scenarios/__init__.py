"""One module per benchmark scenario; each has ``run(options) -> Report``."""
