"""Flask on waitress, as a container app: address from the environment, clean exit on SIGTERM."""

import os
import signal
import sys

from flask import Flask, jsonify, render_template
from waitress import serve

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return render_template("index.html", name="waitress")


@app.get("/api")
def api():  # type: ignore[no-untyped-def]
    return jsonify(app="flaskhello", ok=True)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8080")))


if __name__ == "__main__":
    main()
