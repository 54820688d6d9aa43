"""The worker bridge: jobs stream in batches from the worker thread, Stop works at once, stale text is dropped."""

from __future__ import annotations

import threading

from assistant.core.errors import ModelError
from assistant.core.prompts import StoryRequest
from assistant.core.settings import SamplerSettings
from assistant.engine.session import ModelChoice
from assistant.gui.worker import AiClient

SETTINGS = SamplerSettings(max_new_tokens=100)


def test_job_streams_all_text_from_the_worker_thread(qtbot, fake_client, fake_session) -> None:
    job = fake_client.start(StoryRequest("Once"), SETTINGS)
    chunks: list[str] = []
    job.chunk.connect(chunks.append)
    with qtbot.waitSignal(job.finished, timeout=5000) as finished:
        pass
    assert "".join(chunks) == "".join(fake_session.words) == job.text
    assert len(chunks) < len(fake_session.words), "text arrives in batches, not one signal per token"
    assert finished.args[0]["finish_reason"] == "length"
    assert len(fake_session.threads) == 1
    assert threading.main_thread().ident not in fake_session.threads, "the model runs only in the worker thread"
    assert fake_client.state == "ready"


def test_stop_ends_the_job_quickly(qtbot, fake_client, fake_session) -> None:
    fake_session.words = [f"w{index} " for index in range(2000)]
    job = fake_client.start(StoryRequest("Once"), SamplerSettings(max_new_tokens=2000))
    qtbot.waitUntil(lambda: len(job.text) > 0, timeout=5000)
    with qtbot.waitSignal(job.finished, timeout=2000) as finished:
        job.stop()
    assert finished.args[0]["finish_reason"] == "cancelled"
    assert len(job.text.split()) < 2000


def test_discarded_job_never_delivers_text(qtbot, fake_client, fake_session) -> None:
    stale = fake_client.start(StoryRequest("old"), SETTINGS)
    received: list[str] = []
    stale.chunk.connect(received.append)
    stale.finished.connect(lambda _stats: received.append("finished"))
    stale.discard()
    fresh = fake_client.start(StoryRequest("new"), SETTINGS)
    with qtbot.waitSignal(fresh.finished, timeout=5000):
        pass
    assert received == []
    assert fresh.text


def test_failed_load_keeps_the_previous_model(qtbot) -> None:
    from tests.gui.conftest import FakeSession

    session = FakeSession()

    def factory(choice: ModelChoice, _progress):
        if choice.model == "broken":
            raise ModelError("The model file of broken.gguf is damaged or incomplete.")
        return session

    client = AiClient(factory)
    try:
        with qtbot.waitSignal(client.modelLoaded, timeout=5000):
            client.load(ModelChoice())
        with qtbot.waitSignal(client.loadFailed, timeout=5000) as failed:
            client.load(ModelChoice(model="broken"))
        assert "damaged or incomplete" in failed.args[0]
        assert client.state == "ready" and client.model_info is not None
        job = client.start(StoryRequest("still works"), SETTINGS)
        with qtbot.waitSignal(job.finished, timeout=5000):
            pass
        assert job.text
    finally:
        client.shutdown()


def test_job_error_reaches_the_ui_as_a_sentence(qtbot, fake_client, fake_session) -> None:
    fake_session.fail_with = ModelError("Not enough memory to generate this answer.")
    job = fake_client.start(StoryRequest("x"), SETTINGS)
    with qtbot.waitSignal(job.failed, timeout=5000) as failed:
        pass
    assert failed.args[0] == "Not enough memory to generate this answer."


def test_real_model_streams_through_the_worker(qtbot, real_client) -> None:
    job = real_client.start(StoryRequest("The castle gates opened and"), SamplerSettings(max_new_tokens=16, seed=2))
    with qtbot.waitSignal(job.finished, timeout=60000) as finished:
        pass
    assert job.text.strip()
    assert finished.args[0]["new_tokens"] >= 1


def test_text_held_back_for_the_batch_interval_is_not_held_longer(qtbot, fake_client, fake_session) -> None:
    """A piece that comes right after a batch goes out when the interval ends, not with the next piece, which can be
    seconds away (the next part of a synopsis, a long prefill)."""
    from assistant.engine.generate import GenerationStats, TextStream

    model_busy = threading.Event()

    def run(request, settings, cancel, progress=None) -> TextStream:
        def pieces():
            yield "first "
            yield "second "  # within the batch interval of "first": held back for it
            model_busy.wait(5)  # the model works on something else meanwhile
            yield "third"

        return TextStream(pieces(), GenerationStats(prompt_tokens=3))

    fake_session.run = run  # type: ignore[method-assign]
    job = fake_client.start(StoryRequest("Once"), SETTINGS)
    chunks: list[str] = []
    job.chunk.connect(chunks.append)
    qtbot.waitUntil(lambda: "".join(chunks) == "first second ", timeout=1000)
    model_busy.set()
    with qtbot.waitSignal(job.finished, timeout=5000):
        pass
    assert "".join(chunks) == "first second third" == job.text
