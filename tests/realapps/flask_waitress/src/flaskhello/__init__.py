"""A small Flask site, served by waitress."""
