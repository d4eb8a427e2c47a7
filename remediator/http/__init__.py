"""The HTTP edge: the listener (metrics, health) and the Alertmanager webhook bridge."""
