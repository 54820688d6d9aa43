"""Headless commands on the same engine the GUI uses: generate, chat, models.

Results stream to stdout; model-load progress, errors and ``--stats`` go to stderr, so output can be piped.
Exit codes: 0 success, 2 usage or bad input, 3 model error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from assistant import __version__
from assistant.core.documents import MAX_TEXT_BYTES, decode_bytes, read_text_file
from assistant.core.errors import InputError, ModelError, PenwrightError
from assistant.core.prompts import (
    CODE_MODES,
    POEM_FORMS,
    REWRITE_STYLES,
    SUMMARY_FORMS,
    TASKS,
    ChatRequest,
    CodeRequest,
    Message,
    PoemRequest,
    Prompt,
    RewriteRequest,
    StoryRequest,
    SummaryRequest,
    TranslateRequest,
)
from assistant.core.settings import BACKENDS, QUANTIZE_CHOICES, SamplerSettings

if TYPE_CHECKING:
    from assistant.engine.generate import CancelToken, Engine, TextStream
    from assistant.engine.remote import RemoteSession
    from assistant.engine.session import ProgressCallback
    from assistant.engine.tasks import TaskRequest

    Backend = Engine | RemoteSession

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_INTERRUPTED = 130
STARTING_LIBRARIES = "Starting the AI libraries"  # the first stage load_model reports, while it imports


# --- arguments -------------------------------------------------------------------------------------------------


def _model_options(parser: argparse.ArgumentParser) -> None:
    from assistant.engine.devices import DEVICE_CHOICES, DTYPE_CHOICES

    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="PATH_OR_ID", help="a .gguf file, a model folder or a cached model id")
    group.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="where to run (default: auto)")
    group.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help="weight precision (default: auto)")
    group.add_argument(
        "--quantize",
        default="auto",
        choices=QUANTIZE_CHOICES,
        help="weight storage on the CPU: int4 or int8 decode faster (default: auto = int4 for a 4-bit GGUF, else int8)",
    )
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run Python code shipped with the model (only for models whose authors you trust)",
    )
    group.add_argument("--voice", metavar="NAME", default=None, help="write in a voice learnt with 'penwright tune'")


def _backend_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the model runs")
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="local: this computer (the default); remote: an OpenAI-compatible server such as vLLM, llama.cpp, "
        "Ollama or penwright serve (the default when --base-url is given)",
    )
    group.add_argument(
        "--base-url", metavar="URL", help="the server's API, such as http://localhost:8000/v1 (default: Settings')"
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help="the server's key; visible in the process list, so prefer PENWRIGHT_API_KEY or the key kept by the app",
    )
    group.add_argument("--remote-model", metavar="NAME", help="the server's model (default: the first it lists)")
    group.add_argument(
        "--remote-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long the server may stay silent before Penwright gives up (default 120)",
    )


def _sampler_options(parser: argparse.ArgumentParser, max_new_tokens: int) -> None:
    defaults = SamplerSettings()
    group = parser.add_argument_group("sampling")
    group.add_argument("--max-new-tokens", type=int, default=max_new_tokens, metavar="N")
    group.add_argument("--temperature", type=float, default=None, help=f"0 = greedy (default {defaults.temperature})")
    group.add_argument("--top-p", type=float, default=None, help=f"default {defaults.top_p}")
    group.add_argument("--top-k", type=int, default=None, help=f"0 = off (default {defaults.top_k})")
    group.add_argument("--min-p", type=float, default=None, help=f"default {defaults.min_p}")
    group.add_argument("--repetition-penalty", type=float, default=None, help=f"default {defaults.repetition_penalty}")
    group.add_argument("--seed", type=int, default=None, help="the same seed gives the same text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="penwright",
        description="Penwright: a private, offline writing assistant.",
    )
    parser.add_argument("--version", action="version", version=f"penwright {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and library logs")
    parser.add_argument(
        "--selftest", action="store_true", help="load the model, write a few words, show where files live, exit"
    )
    parser.add_argument(
        "--install-desktop-entry", action="store_true", help="add Penwright to this user's application menu"
    )
    parser.add_argument(
        "--uninstall-desktop-entry", action="store_true", help="remove Penwright from the application menu"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    generate = commands.add_parser("generate", help="run one task and stream the result to stdout")
    generate.add_argument("--task", required=True, choices=TASKS)
    generate.add_argument("--prompt", metavar="TEXT", help="the text to work on (or the theme, message, instruction)")
    generate.add_argument("--input", metavar="FILE", help="read the text from FILE ('-' for stdin)")
    generate.add_argument("--stats", action="store_true", help="print one JSON line of timings to stderr at the end")
    task = generate.add_argument_group("task options")
    task.add_argument("--memory", default="", help="story: facts always kept in view")
    task.add_argument("--authors-note", default="", help="story: a steering note placed near the end")
    task.add_argument(
        "--form",
        default=None,
        help=f"poem: {', '.join(POEM_FORMS)} or your own; summary: paragraph (default) or synopsis (each part, "
        "by the text's own headings, then the whole)",
    )
    task.add_argument("--style", default=None, help=f"poem: a style; rewrite: {', '.join(REWRITE_STYLES)}, custom")
    task.add_argument("--instruction", default="", help="rewrite: your own instruction")
    task.add_argument("--language", default=None, help="translate: target language; code: programming language")
    task.add_argument("--mode", default="complete", choices=CODE_MODES, help="code: what to do (default complete)")
    task.add_argument("--error", default="", help="code --mode fix: the error message")
    task.add_argument("--system", default=None, help="chat: the system prompt")
    _model_options(generate)
    _backend_options(generate)
    _sampler_options(generate, 256)

    chat = commands.add_parser("chat", help="talk with the model (Ctrl-C stops an answer, Ctrl-D quits)")
    chat.add_argument("--system", default=None, help="the system prompt")
    chat.add_argument("--stats", action="store_true", help="print timings after each answer")
    _model_options(chat)
    _backend_options(chat)
    _sampler_options(chat, 512)

    models = commands.add_parser(
        "models", help="list the bundled model, cached models and cached conversions (or a server's models)"
    )
    _backend_options(models)

    complete = commands.add_parser(
        "complete", help="print the inline suggestion the app would show at a cursor (for any editor to call)"
    )
    complete.add_argument("--mode", required=True, choices=("code", "prose"))
    complete.add_argument("--language", default=None, help="code: the programming language")
    complete.add_argument("--prefix-file", required=True, metavar="A", help="the text before the cursor ('-' = stdin)")
    complete.add_argument("--suffix-file", default=None, metavar="B", help="the text after the cursor")
    complete.add_argument("--seed", type=int, default=None)
    complete.add_argument("--stats", action="store_true", help="print one JSON line of timings to stderr")
    _model_options(complete)
    _backend_options(complete)

    _serve_options(commands)
    _voice_options(commands)

    gui = commands.add_parser("gui", help="open the desktop app (the default when no command is given)")
    gui.add_argument("files", nargs="*", metavar="FILE", help="files to open")
    gui.add_argument("--screenshot", metavar="FILE", help="wait until the model is ready, save a PNG, exit")
    gui.add_argument("--profile", metavar="DIR", help="keep settings, chats and caches in DIR")
    return parser


COMMANDS = ("generate", "chat", "models", "complete", "serve", "tune", "voices", "gui")
TOP_LEVEL_ACTIONS = ("--selftest", "--install-desktop-entry", "--uninstall-desktop-entry")


def route_arguments(argv: list[str]) -> list[str]:
    """``penwright`` and ``penwright FILE ...`` open the desktop app; everything else is a subcommand."""
    index = 0
    while index < len(argv) and argv[index] == "--debug":
        index += 1
    rest = argv[index:]
    if any(flag in rest for flag in TOP_LEVEL_ACTIONS):
        return argv
    if not rest or (rest[0] not in COMMANDS and not rest[0].startswith("-")):
        return [*argv[:index], "gui", *rest]
    return argv


# --- input -----------------------------------------------------------------------------------------------------


def read_input(source: str, stdin: Any = None, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """Text from a file or stdin ('-'), refusing binary, undecodable, empty and oversized input."""
    if source == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        data = stream.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise InputError(f"The input is larger than {max_bytes // (1024 * 1024)} MB; give a smaller text.")
        text = decode_bytes(data, "The input").text
    else:
        text = read_text_file(source, max_bytes).text
    if not text.strip():
        raise InputError("The input is empty: there is nothing to work on.")
    return text


def build_request(args: argparse.Namespace, text: str | None) -> TaskRequest:
    """The task request from the command line: ``--input`` gives the text, ``--prompt`` the text or the ask."""
    prompt = args.prompt
    main_text = text if text is not None else prompt
    task = args.task
    if main_text is None or not main_text.strip():
        raise InputError(f"Give the {task} something to work on with --prompt TEXT or --input FILE.")
    if task == "story":
        return StoryRequest(main_text, memory=args.memory, authors_note=args.authors_note)
    if task == "poem":
        return PoemRequest(main_text, form=args.form or "free verse", style=args.style or "")
    if task == "summary":
        form = args.form or "paragraph"
        if form not in SUMMARY_FORMS:
            raise InputError(f"A summary's --form is one of: {', '.join(SUMMARY_FORMS)} (not '{form}').")
        return SummaryRequest(main_text, form=form)
    if task == "rewrite":
        instruction = args.instruction or (prompt if text is not None and prompt else "")
        style = args.style or ("custom" if instruction else "shorter")
        return RewriteRequest(main_text, style=style, instruction=instruction)
    if task == "translate":
        return TranslateRequest(
            main_text, language=args.language or (prompt if text is not None and prompt else "English")
        )
    if task == "code":
        if args.mode == "generate" and text is not None and prompt:
            main_text = f"{prompt}\n\n{text}"
        filename = args.input if args.input and args.input != "-" else None
        return CodeRequest(main_text, mode=args.mode, language=args.language, filename=filename, error=args.error)
    history: list[Message] = [{"role": "user", "content": main_text}]
    return ChatRequest(history, system_prompt=args.system)


def sampler_from(args: argparse.Namespace) -> SamplerSettings:
    settings = SamplerSettings().with_changes(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    try:
        settings.validate()
    except ValueError as error:
        raise InputError(f"Invalid sampler setting: {error}.") from None
    return settings


# --- model loading with progress -------------------------------------------------------------------------------


class LoadProgress:
    """Model-load progress on stderr: a live bar on a terminal, plain lines in a log."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._interactive = stream.isatty()
        self._bar: Any = None
        self._stage: str | None = None

    def __call__(self, stage: str, fraction: float | None) -> None:
        repeated, self._stage = stage == self._stage, stage
        if self._interactive:
            from tqdm import tqdm

            if self._bar is None:
                self._bar = tqdm(total=100, file=self._stream, leave=False, bar_format="{desc} {bar} {elapsed}")
            self._bar.set_description_str(stage)
            if fraction is not None:
                self._bar.n = int(fraction * 100)
            self._bar.refresh()
            if fraction == 1.0:
                self.close()
        elif not repeated:  # start_libraries and then load_model both say "Starting the AI libraries"
            print(f"penwright: {stage}", file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def start_libraries(progress: LoadProgress, requested: str | None = None) -> None:
    """Import torch and transformers the fast way before loading (see ``assistant.engine.import_libraries``).

    A model that is not there is said at once, not after the seconds the imports take.
    """
    from assistant.engine import import_libraries
    from assistant.engine.sources import resolve_source

    resolve_source(requested)
    progress(STARTING_LIBRARIES, None)
    import_libraries()


def load_engine(args: argparse.Namespace, err: TextIO) -> Engine:
    from assistant.engine.generate import Engine
    from assistant.engine.models import load_model

    if args.trust_remote_code:
        print(
            "penwright: warning: --trust-remote-code runs Python code shipped with the model; "
            "use it only for models from authors you trust.",
            file=err,
        )
    progress = LoadProgress(err)
    try:
        start_libraries(progress, args.model)
        loaded = load_model(
            args.model,
            device=args.device,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
            progress=progress,
            quantize=args.quantize,
            voice=getattr(args, "voice", None),
        )
    finally:
        progress.close()
    return Engine(loaded)


def uses_remote(args: argparse.Namespace) -> bool:
    """``--backend remote``, or ``--base-url`` without ``--backend``."""
    backend = getattr(args, "backend", None)
    return backend == "remote" or (backend is None and bool(getattr(args, "base_url", None)))


def remote_choice(args: argparse.Namespace) -> Any:
    """The server from the command line, else from the app's Settings; the key from --api-key, PENWRIGHT_API_KEY
    or the keyring (where the app keeps it)."""
    from assistant.core.api_keys import ENV_VARIABLE, default_key_store
    from assistant.core.settings import load_settings
    from assistant.engine.remote import READ_TIMEOUT_S, RemoteChoice, normalize_base_url

    if getattr(args, "model", None):
        raise InputError("--model picks a local model; with --backend remote name the server's with --remote-model.")
    if getattr(args, "voice", None):
        raise InputError("--voice runs on this computer's model; a remote server has no voices learnt here.")
    saved = load_settings()
    base_url = args.base_url or saved.remote_base_url
    if not base_url:
        raise InputError(
            "--backend remote needs the server's address: --base-url http://HOST:PORT/v1 (or set one in Settings)."
        )
    base_url = normalize_base_url(base_url)
    same_server = not args.base_url or normalize_base_url(saved.remote_base_url or "x") == base_url
    model = args.remote_model or (saved.remote_model if same_server else "")
    key = args.api_key or os.environ.get(ENV_VARIABLE, "").strip() or default_key_store().get(base_url)
    timeout = args.remote_timeout or (float(saved.remote_timeout_s) if saved.remote_timeout_s else READ_TIMEOUT_S)
    if timeout <= 0:
        raise InputError("--remote-timeout must be more than 0 seconds.")
    return RemoteChoice(base_url, key, model, timeout)


def load_backend(args: argparse.Namespace, err: TextIO) -> Backend:
    """The local engine, or a session on the remote server (``--backend remote``); never one for the other."""
    if not uses_remote(args):
        return load_engine(args, err)
    from assistant.engine.remote import open_remote_session

    def progress(stage: str, _fraction: float | None) -> None:
        print(f"penwright: {stage}", file=err, flush=True)

    return open_remote_session(remote_choice(args), progress)


def run_on(
    backend: Backend,
    request: TaskRequest,
    settings: SamplerSettings,
    cancel: CancelToken,
    progress: ProgressCallback | None = None,
) -> TextStream:
    from assistant.engine.remote import RemoteSession
    from assistant.engine.tasks import run_task

    if isinstance(backend, RemoteSession):
        return backend.run(request, settings, cancel, progress)
    return run_task(backend, request, settings, cancel, progress)


def backend_name(backend: Backend) -> str:
    from assistant.engine.remote import RemoteSession

    if isinstance(backend, RemoteSession):
        info = backend.describe()
        return f"{info.name} at {info.host}"
    return backend.name


def _quiet_libraries(debug: bool, err: TextIO) -> None:
    """Library warnings and per-tensor progress bars are noise for a writer; --debug shows them."""
    if debug:
        logging.basicConfig(level=logging.INFO)
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    if not err.isatty():
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


# --- Ctrl-C ----------------------------------------------------------------------------------------------------


@contextmanager
def cancel_on_interrupt(cancel: CancelToken) -> Iterator[list[bool]]:
    """While generating, Ctrl-C sets the cancel token (the answer stops within one token) instead of raising."""
    interrupted = [False]

    def handler(_signum: int, _frame: Any) -> None:
        interrupted[0] = True
        cancel.cancel()

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no handler, the caller's cancel token still works
        yield interrupted
        return
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _write_stream(stream: TextStream, out: TextIO) -> str:
    parts: list[str] = []
    for piece in stream:
        parts.append(piece)
        out.write(piece)
        out.flush()
    return "".join(parts)


# --- commands --------------------------------------------------------------------------------------------------


def command_generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from assistant.engine.generate import CancelToken

    text = read_input(args.input) if args.input else None
    request = build_request(args, text)
    settings = sampler_from(args)
    engine = load_backend(args, err)
    cancel = CancelToken()

    def summary_progress(stage: str, _fraction: float | None) -> None:
        print(f"penwright: {stage}", file=err, flush=True)

    with cancel_on_interrupt(cancel) as interrupted:
        stream = run_on(engine, request, settings, cancel, summary_progress)
        result = _write_stream(stream, out)
    if result and not result.endswith("\n"):
        out.write("\n")
        out.flush()
    if args.stats:
        print(json.dumps(stream.stats.to_dict()), file=err, flush=True)
    return EXIT_INTERRUPTED if interrupted[0] else EXIT_OK


def command_chat(args: argparse.Namespace, out: TextIO, err: TextIO, read_line: Callable[[str], str] = input) -> int:
    settings = sampler_from(args)
    engine = load_backend(args, err)
    history: list[Message] = []
    system = args.system
    print(
        f"Chatting with {backend_name(engine)}. Ctrl-C stops an answer, Ctrl-D quits, /new starts over.",
        file=err,
        flush=True,
    )
    while True:
        try:
            if not _chat_turn(engine, history, system, settings, args, out, err, read_line):
                return EXIT_OK
        except KeyboardInterrupt:
            # Ctrl-C outside an answer (at the prompt, or just as an answer ended) clears the line; Ctrl-D quits.
            print(file=err, flush=True)


def _chat_turn(
    engine: Backend,
    history: list[Message],
    system: str | None,
    settings: SamplerSettings,
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    read_line: Callable[[str], str],
) -> bool:
    """One exchange of the interactive chat; False when the user quits."""
    from assistant.engine.generate import CancelToken

    try:
        line = read_line("you> ")
    except EOFError:
        print(file=err)
        return False
    message = line.strip()
    if not message:
        return True
    if message in ("/exit", "/quit"):
        return False
    if message == "/new":
        history.clear()
        print("(new conversation)", file=err, flush=True)
        return True
    history.append({"role": "user", "content": message})
    cancel = CancelToken()
    out.write("penwright> ")
    out.flush()
    try:
        with cancel_on_interrupt(cancel) as interrupted:
            stream = run_on(engine, ChatRequest(list(history), system_prompt=system), settings, cancel)
            answer = _write_stream(stream, out)
    except InputError as error:
        history.pop()
        print(f"\npenwright: {error}", file=err, flush=True)
        return True
    out.write("\n")
    out.flush()
    if interrupted[0]:
        print("(stopped)", file=err, flush=True)
    # A stopped answer stays in the history as far as it got, as in GPT4All.
    history.append({"role": "assistant", "content": answer})
    if args.stats:
        print(json.dumps(stream.stats.to_dict()), file=err, flush=True)
    return True


def _read_context(source: str) -> str:
    """Like read_input, but an empty prefix or suffix is fine: a cursor can sit at the start of a file."""
    if source == "-":
        data = sys.stdin.buffer.read(MAX_TEXT_BYTES + 1)
        if len(data) > MAX_TEXT_BYTES:
            raise InputError("The input is larger than 20 MB; give a smaller text.")
        return decode_bytes(data, "The input").text if data else ""
    return read_text_file(source).text


def command_complete(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The same suggestion the GUI would show: same request, same completer, same stop rules."""
    from assistant.engine.completion import INLINE_SETTINGS, InlineRequest
    from assistant.engine.session import EngineSession

    prefix = _read_context(args.prefix_file)
    suffix = _read_context(args.suffix_file) if args.suffix_file else ""
    request = InlineRequest(mode=args.mode, prefix=prefix, suffix=suffix, language=args.language, pane="cli")
    if uses_remote(args):
        return _complete_remote(args, request, out, err)
    engine = load_engine(args, err)
    settings = INLINE_SETTINGS if args.seed is None else INLINE_SETTINGS.with_changes(seed=args.seed)
    result = EngineSession(engine).completer.suggest(request, settings=settings)
    out.write(result.text)
    out.flush()
    if args.stats:
        stats = {
            "load_s": round(engine.loaded.load_seconds, 3),
            "weights": engine.loaded.weights,
            "decoding": engine.decode_path,
            "notes": engine.notes,
            "prompt_tokens": result.prompt_tokens,
            "new_tokens": result.new_tokens,
            "first_text_ms": round(result.first_text_ms, 1),
            "total_ms": round(result.total_ms, 1),
        }
        print(json.dumps(stats), file=err, flush=True)
    return EXIT_OK


def _complete_remote(args: argparse.Namespace, request: Any, out: TextIO, err: TextIO) -> int:
    """The suggestion from the server: /v1/completions with suffix, llama.cpp's /infill or the prefix; our rules."""
    from assistant.engine.generate import CancelToken
    from assistant.engine.remote import RemoteSession

    session = load_backend(args, err)
    assert isinstance(session, RemoteSession)
    cancel = CancelToken()
    try:
        with cancel_on_interrupt(cancel) as interrupted:
            result = session.suggest(request, cancel)
    finally:
        session.close()
    out.write(result.text)
    out.flush()
    if args.stats:
        info = session.describe()
        stats = {
            "backend": "remote",
            "server": info.base_url,
            "model": info.name,
            "route": result.details.get("route", ""),
            "new_tokens": result.new_tokens,
            "first_text_ms": round(result.first_text_ms, 1),
            "total_ms": round(result.total_ms, 1),
        }
        print(json.dumps(stats), file=err, flush=True)
    return EXIT_INTERRUPTED if interrupted[0] else EXIT_OK


def _serve_options(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="answer OpenAI-style API requests on this machine (for editors such as Continue)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    serve.add_argument("--port", type=int, default=8765, help="port to listen on (default: 8765; 0 = any free one)")
    key = serve.add_mutually_exclusive_group()
    key.add_argument("--api-key", metavar="KEY", help="clients must send it (visible in the process list)")
    key.add_argument("--api-key-file", metavar="FILE", help="read the API key from the first line of FILE")
    serve.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN", help="let web pages from ORIGIN call the API"
    )
    serve.add_argument(
        "--queue-size", type=int, default=8, metavar="N", help="requests that may wait while one runs (default 8)"
    )
    serve.add_argument("--served-model-name", metavar="NAME", help="the model id clients use (default: its name)")
    _model_options(serve)


def command_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The engine over HTTP: who may connect is settled and the port taken before the model loads."""
    from assistant.server.serve import bind, check_exposure, read_api_key, serve_forever
    from assistant.server.worker import EngineModel

    if args.queue_size < 0:
        raise InputError("--queue-size must be 0 or more.")
    api_key = read_api_key(args.api_key, args.api_key_file)
    check_exposure(args.host, api_key)
    sock = bind(args.host, args.port)
    try:
        engine = load_engine(args, err)
    except BaseException:
        sock.close()
        raise
    model = EngineModel(engine, args.served_model_name)
    serve_forever(model, sock, args.host, api_key, args.cors_origin, args.queue_size, out, args.debug)
    print("penwright: stopped serving", file=err, flush=True)
    return EXIT_OK


def command_selftest(out: TextIO, err: TextIO) -> int:
    """Prove an installation works: where its files live, then the bundled model writes a few words."""
    import time

    from assistant.core.paths import app_dirs
    from assistant.engine.generate import Engine
    from assistant.engine.models import load_model

    dirs = app_dirs()
    out.write(f"penwright {__version__}\n")
    for label, path in (
        ("config", dirs.config),
        ("data", dirs.data),
        ("cache", dirs.cache),
        ("recovery", dirs.recovery),
        ("conversions", dirs.conversions),
        ("quantized", dirs.quantized),
    ):
        out.write(f"{label + ':':<13}{path}\n")
    from assistant.core.prompts import TASKS, default_system_prompt

    if not default_system_prompt():
        raise ModelError("The prompt templates are missing from this installation; reinstall Penwright.")
    out.write(f"{'templates:':<13}{len(TASKS)} tasks, prompts found\n")
    started = time.perf_counter()
    progress = LoadProgress(err)
    try:
        start_libraries(progress)
        loaded = load_model(device="cpu", progress=progress)
    finally:
        progress.close()
    engine = Engine(loaded)
    text = engine.generate(
        Prompt(text="The quick brown fox"),
        SamplerSettings(temperature=0, max_new_tokens=8),
    )
    if not text.strip():
        raise ModelError("The model loaded but wrote nothing.")
    weights = loaded.quantization.describe() if loaded.quantization else f"{loaded.weights} weights"
    out.write(f"{'model:':<13}{loaded.name} ({loaded.source.location}), {weights}\n")
    out.write(f"{'decoding:':<13}{engine.decode_path}\n")
    if engine.notes:  # a self-check that failed on this CPU: slower than it could be, never wrong
        out.write(f"{'note:':<13}{engine.notes}\n")
    out.write(f"{'wrote:':<13}{text.strip()!r}\n")
    out.write(f"selftest ok in {time.perf_counter() - started:.1f} s\n")
    out.flush()
    return EXIT_OK


def command_desktop_entry(install: bool, out: TextIO) -> int:
    from assistant.desktop_entry import install_desktop_entry, uninstall_desktop_entry

    if install:
        for path in install_desktop_entry():
            out.write(f"installed {path}\n")
    else:
        removed = uninstall_desktop_entry()
        out.write("".join(f"removed {path}\n" for path in removed) or "nothing to remove\n")
    return EXIT_OK


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def command_models(out: TextIO, args: argparse.Namespace | None = None) -> int:
    if args is not None and uses_remote(args):
        from assistant.engine.remote import list_models as server_models

        choice = remote_choice(args)
        for name in server_models(choice.base_url, choice.api_key, choice.timeout_s):
            out.write(f"remote      {name}  {choice.base_url}\n")
        return EXIT_OK
    from assistant.engine.sources import list_models

    listings = list_models()
    if not listings:
        out.write("No models found. Run 'make setup' to install the bundled model.\n")
        return EXIT_OK
    width = max(len(listing.name) for listing in listings)
    for listing in listings:
        out.write(
            f"{listing.kind:<11} {listing.name:<{width}}  {_human_bytes(listing.size_bytes):>9}  {listing.location}\n"
        )
    return EXIT_OK


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(route_arguments(list(sys.argv[1:] if argv is None else argv)))
    _quiet_libraries(args.debug, err)
    import assistant.engine  # noqa: F401  (sets the Hugging Face libraries offline before they load)

    try:
        if args.selftest:
            return command_selftest(out, err)
        if args.install_desktop_entry or args.uninstall_desktop_entry:
            return command_desktop_entry(args.install_desktop_entry, out)
        if args.command == "generate":
            return command_generate(args, out, err)
        if args.command == "chat":
            return command_chat(args, out, err)
        if args.command == "models":
            return command_models(out, args)
        if args.command == "complete":
            return command_complete(args, out, err)
        if args.command == "serve":
            return command_serve(args, out, err)
        if args.command == "tune":
            return command_tune(args, out, err)
        if args.command == "voices":
            return command_voices(out)
        return command_gui(args, err)
    except PenwrightError as error:
        if args.debug:
            raise
        print(f"penwright: {error}", file=err, flush=True)
        return error.exit_code if error.exit_code in (EXIT_USAGE, EXIT_MODEL) else 1
    except KeyboardInterrupt:
        print("\npenwright: interrupted", file=err, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


def command_gui(args: argparse.Namespace, err: TextIO) -> int:
    """The desktop app; a clear sentence instead of a crash where Qt cannot open a window."""
    try:
        from assistant.gui.app import run_app
    except ImportError as error:
        print(f"penwright: the desktop app cannot start ({error}); the command line still works.", file=err)
        return 1
    for file in args.files:
        if not os.path.exists(file):
            print(f"penwright: '{file}' does not exist.", file=err)
            return EXIT_USAGE
    return run_app(args.files, screenshot=args.screenshot, profile=args.profile)


# --- voices: penwright tune, penwright voices -------------------------------------------------------------------


def _voice_options(commands: Any) -> None:
    tune = commands.add_parser(
        "tune", help="learn your voice from your own texts (a LoRA adapter, trained on this computer)"
    )
    tune.add_argument("--texts", nargs="+", required=True, metavar="FILE_OR_FOLDER", help=".txt and .md files")
    tune.add_argument("--name", required=True, help="the voice's name, for --voice NAME")
    tune.add_argument("--minutes", type=float, default=8.0, help="time budget; the best adapter is kept (default 8)")
    tune.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8, measured)")
    tune.add_argument("--epochs", type=float, default=3.0, help="at most this many passes over the texts (default 3)")
    tune.add_argument("--replace", action="store_true", help="replace a voice of the same name")
    tune.add_argument("--model", metavar="PATH_OR_ID", help="the base model (default: the bundled one)")
    tune.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    commands.add_parser("voices", help="list the voices learnt with 'penwright tune'")


def command_tune(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Learn a voice: progress (loss, tokens/s, time left) on stderr, Ctrl-C keeps the best adapter so far."""
    import math

    from assistant.core.voice_texts import load_texts
    from assistant.engine.generate import CancelToken
    from assistant.engine.voices import TrainingOptions, check_name, load_for_training, train_voice, voice_folder

    name = check_name(args.name)
    if voice_folder(name).exists() and not args.replace:
        raise InputError(f"A voice named '{name}' exists already; choose another name, or add --replace.")
    options = TrainingOptions(minutes=args.minutes, rank=args.rank, epochs=args.epochs)
    options.check()
    texts = load_texts(args.texts)
    print(
        f"penwright: {texts.words:,} words from {len(texts.files)} file{'s' if len(texts.files) != 1 else ''}; "
        f"{texts.held_out_words:,} held out to measure the voice",
        file=err,
        flush=True,
    )
    progress = LoadProgress(err)
    try:
        start_libraries(progress, args.model)
        loaded = load_for_training(args.model, device=args.device, progress=progress)
    finally:
        progress.close()
    from tqdm import tqdm

    bar = tqdm(total=1, file=err, unit="step", disable=not err.isatty(), dynamic_ncols=True)
    interactive = err.isatty()

    def on_progress(item: Any) -> None:
        if item.stage == "measuring":
            bar.set_description_str("Measuring the model on your held-out text")
            if not interactive:
                print("penwright: measuring the model on your held-out text", file=err, flush=True)
            return
        if item.stage == "saving":
            bar.set_description_str("Saving the voice")
            return
        bar.total = item.steps
        bar.n = item.step
        held = f", held-out perplexity {item.held_out_perplexity:.2f}" if item.held_out_perplexity else ""
        summary = f"loss {item.loss:.3f}, {item.tokens_per_s:.0f} tokens/s, {item.seconds_left / 60:.1f} min left"
        bar.set_postfix_str(summary + held)
        if not interactive and (item.held_out_perplexity is not None or item.step == 1):
            print(f"penwright: step {item.step}/{item.steps}: {summary}{held}", file=err, flush=True)

    cancel = CancelToken()
    try:
        with cancel_on_interrupt(cancel) as interrupted:
            report = train_voice(
                loaded, texts, name, options, progress=on_progress, cancel=cancel, replace=args.replace
            )
    finally:
        bar.close()
    change = f"{report.improvement:.0%} lower" if report.improvement > 0 else "no better"
    print(
        f"penwright: {'stopped; ' if interrupted[0] else ''}saved the voice '{name}' ({report.steps} steps, "
        f"{report.minutes:.1f} min, peak memory {report.peak_memory_mb:,.0f} MB): held-out perplexity "
        f"{report.perplexity_before:.2f} -> {report.perplexity_after:.2f} ({change})",
        file=err,
        flush=True,
    )
    out.write(f"{voice_folder(name)}\n")
    if not math.isfinite(report.perplexity_after):
        return 1
    return EXIT_INTERRUPTED if interrupted[0] else EXIT_OK


def command_voices(out: TextIO) -> int:
    from assistant.engine.voices import list_voices, voices_folder

    voices = list_voices()
    if not voices:
        out.write(f"No voices yet (they live in {voices_folder()}); learn one with 'penwright tune'.\n")
        return EXIT_OK
    for voice in voices:
        out.write(voice.describe() + "\n")
    return EXIT_OK


__all__ = ["main"]
