"""Greets people from a phrase list shipped as package data."""
