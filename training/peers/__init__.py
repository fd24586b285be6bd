"""Classic pipeline peers: non-learned lip-sync baselines for `thunder-train evaluate --peer`."""
