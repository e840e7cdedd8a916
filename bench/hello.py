"""The baseline of bench.http: a minimal FastAPI hello, served exactly as the service is.

`python -m bench.hello` runs it through app.http.server.run with the same Settings (same uvicorn
protocol class, loop, limits and logging), so a ratio against it measures the counter's own
work per request and nothing about the server around it.
"""

from fastapi import FastAPI

from app.http import server
from app.settings import Settings

hello = FastAPI()


@hello.get("/hello")
async def say_hello() -> dict[str, str]:
    """The least a FastAPI endpoint does: a small JSON answer."""
    return {"hello": "world"}


if __name__ == "__main__":
    server.run(hello, Settings())
