"""Devices that run an artifact: one interface (``base.Runner``) for every kind of device."""
