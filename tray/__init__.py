"""portbell's desktop face: installed as portbell.tray.

Layers (arrows point down): app.py composes and is the only pystray import;
notify.py (plyer), icon.py (Pillow), state.py (reads the daemon's record),
system.py (clipboard, opener, the daemon's start); menu.py, alerts.py and
guard.py are pure. The tray reads what the daemon records and never samples
sockets itself; it writes only decisions (trust, mute) into the record.
"""
