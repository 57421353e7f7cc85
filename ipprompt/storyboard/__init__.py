"""The storyboard page (HTML) and the comic page layout it shares with the exporter."""
