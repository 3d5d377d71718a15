"""portbell's desktop face: installed as portbell.tray. It reads what the daemon records."""
