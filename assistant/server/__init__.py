"""``penwright serve``: the engine behind an OpenAI-compatible HTTP API, for editors and scripts. No Qt here.

- :mod:`protocol`: OpenAI's request and response shapes and its error format;
- :mod:`worker`: one thread owns the model and runs requests one at a time from a bounded queue;
- :mod:`app`: the ASGI app (Starlette) that turns HTTP into jobs and job events into JSON or server-sent events;
- :mod:`serve`: who may connect, the socket, uvicorn and Ctrl-C, and a server in a thread for tests and the bench.
"""
