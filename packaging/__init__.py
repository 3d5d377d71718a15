"""What the operating systems start, installed as portbell.packaging: the templates that
`portbell autostart` renders (linux/, macos/, windows/) and the application icons (icons/).
Data only; `make_icons.py` regenerates the icons from the tray's drawing.
"""
