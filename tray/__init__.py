"""portbell's desktop face: installed as portbell.tray.

app.py is the tray's loop (the icon and its menu, shown on the toolkit's thread, and the
entry point); actions.py does what a menu item asks; process.py stops a process, with the
guard against a reused pid; notify.py sends notifications, icon.py draws the icon, state.py
reads the daemon's record and keeps the tray's own state, system.py reaches the desktop
(clipboard, opener, the daemon's start); menu.py and alerts.py are pure. The tray reads what
the daemon records and never samples sockets itself; it writes only decisions (trust, mute)
into the record.
"""
