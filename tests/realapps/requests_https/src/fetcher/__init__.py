"""Fetch a URL over HTTPS with requests."""
