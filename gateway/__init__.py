"""The gateway: the platform's only public entrance (/api/v1/…)."""
