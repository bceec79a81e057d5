"""FastAPI with pydantic models, served by uvicorn (which handles SIGTERM itself).

Both endpoints are plain ``def``: FastAPI runs them in anyio's worker threads, so concurrent
requests run pydantic-core (validation and serialization) on several threads at once."""

import os
import threading

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

app = FastAPI(title="fastsvc")


class Greeting(BaseModel):
    message: str
    length: int


class Order(BaseModel):
    item: str = Field(min_length=1)
    quantity: int = Field(gt=0)


class Receipt(BaseModel):
    item: str
    quantity: int
    worker: bool  # answered off the event loop's thread


@app.get("/")
def index() -> Greeting:
    message = "hello from fastapi"
    return Greeting(message=message, length=len(message))


@app.post("/orders")
def order(body: Order) -> Receipt:
    worker = threading.current_thread() is not threading.main_thread()
    return Receipt(item=body.item, quantity=body.quantity, worker=worker)


def main() -> None:
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8080")),
        log_level="info",
    )


if __name__ == "__main__":
    main()
