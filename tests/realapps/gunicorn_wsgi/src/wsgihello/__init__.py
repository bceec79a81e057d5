"""A WSGI application and its gunicorn configuration."""
