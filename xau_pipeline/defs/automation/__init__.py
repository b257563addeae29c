"""What launches runs unattended: the schedules at each close, the publication, repair and history catch-up sensors."""
