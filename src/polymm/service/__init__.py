"""Plumbing shared by every service: config from the environment, logging, systemd, run loop."""
