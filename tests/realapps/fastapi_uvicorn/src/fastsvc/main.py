"""FastAPI with a pydantic model, served by uvicorn (which handles SIGTERM itself)."""

import os

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI(title="fastsvc")


class Greeting(BaseModel):
    message: str
    length: int


@app.get("/")
def index() -> Greeting:
    message = "hello from fastapi"
    return Greeting(message=message, length=len(message))


def main() -> None:
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8080")),
        log_level="info",
    )


if __name__ == "__main__":
    main()
