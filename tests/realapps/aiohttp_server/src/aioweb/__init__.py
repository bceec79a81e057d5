"""An aiohttp web application."""
