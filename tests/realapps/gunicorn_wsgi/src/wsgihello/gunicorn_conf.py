"""gunicorn settings (-c python:wsgihello.gunicorn_conf)."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"
workers = 2
worker_class = "sync"
accesslog = "-"
graceful_timeout = 5
