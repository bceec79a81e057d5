"""Migrate the database, seed it, then serve the WSGI app with waitress until SIGTERM."""

import os
import signal
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=1)
    from notes.models import Note

    Note.objects.get_or_create(text="hello from django")
    from django.core.wsgi import get_wsgi_application
    from waitress import serve

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(
        get_wsgi_application(),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8080")),
    )


if __name__ == "__main__":
    main()
