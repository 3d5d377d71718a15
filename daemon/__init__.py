"""portbell's engine and everything headless: installed as portbell.daemon."""

__version__ = "0.1.0"
