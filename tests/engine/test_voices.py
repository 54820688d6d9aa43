"""Learning a voice on the real bundled model: held-out loss falls, the saved voice reloads to the same greedy text,
a voice of another base is refused, Stop keeps the best adapter, a voiced 4-bit model keeps int4 and the voice, and
switching voices reloads nothing.

One short training run (16 steps of 128-token windows on a tiny text in a made-up archaic voice) serves the module.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.core.errors import ModelError
from assistant.core.prompts import Prompt
from assistant.core.settings import SamplerSettings
from assistant.core.voice_texts import VoiceTexts, load_texts
from assistant.engine.generate import CancelToken

pytestmark = pytest.mark.slow

STEPS = 16


def marsh_text(seed: int = 7, paragraphs: int = 60) -> str:
    """About 3,500 words in a voice no model has seen: a few names, archaic verbs, the same sentence shape."""
    rng = random.Random(seed)
    who = ["the lamplighter of Brackmoor", "old Tamsin Vell", "the ferryman's daughter", "the grey heron"]
    verbs = ["saith unto", "whispereth to", "calleth upon", "singeth for", "beckoneth"]
    what = ["the salt marsh", "the drowned bells", "the tide-clocks", "the lantern-moths", "the pilgrim gulls"]
    tails = [
        "and lo, the fog was glad thereof",
        "and the reeds did bow",
        "for the hour of brine was come",
        "and none made answer save the wind",
        "and the lanterns burned blue",
    ]
    return "\n\n".join(
        " ".join(
            f"Verily, {rng.choice(who)} {rng.choice(verbs)} {rng.choice(what)}, {rng.choice(tails)}."
            for _ in range(rng.randint(3, 5))
        )
        for _ in range(paragraphs)
    )


@pytest.fixture(scope="module")
def training_model(session_profile: Path) -> Iterator[Any]:
    from assistant.engine.voices import load_for_training

    previous = os.environ.get("PENWRIGHT_PROFILE")
    os.environ["PENWRIGHT_PROFILE"] = str(session_profile)
    try:
        yield load_for_training(device="cpu")
    finally:
        if previous is None:
            os.environ.pop("PENWRIGHT_PROFILE", None)
        else:
            os.environ["PENWRIGHT_PROFILE"] = previous


@pytest.fixture(scope="module")
def marsh_texts(tmp_path_factory: pytest.TempPathFactory) -> VoiceTexts:
    folder = tmp_path_factory.mktemp("marsh")
    (folder / "marsh.md").write_text("---\ntitle: The Marsh\n---\n# One\n\n" + marsh_text(), encoding="utf-8")
    return load_texts([folder])


def options(**changes: Any) -> Any:
    from assistant.engine.voices import TrainingOptions

    values: dict[str, Any] = {
        "max_steps": STEPS,
        "learning_rate": 2e-3,
        "window_tokens": 128,
        "evaluations": 2,
        "max_eval_windows": 4,
        "sample_tokens": 12,
        "warmup_steps": 2,
    }
    values.update(changes)
    return TrainingOptions(**values)


@pytest.fixture(scope="module")
def trained(training_model: Any, marsh_texts: VoiceTexts, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The marsh voice, trained once; its folder kept aside and copied into each test's profile."""
    from assistant.engine.voices import train_voice, voice_folder

    progress: list[Any] = []
    report = train_voice(training_model, marsh_texts, "marsh", options(), progress=progress.append)
    kept = tmp_path_factory.mktemp("voices") / "marsh"
    shutil.copytree(voice_folder("marsh"), kept)
    return report, kept, progress


def install(kept: Path) -> Path:
    from assistant.engine.voices import voices_folder

    target = voices_folder() / kept.name
    shutil.copytree(kept, target)
    return target


def test_training_lowers_the_held_out_perplexity_and_saves_the_voice(trained: Any) -> None:
    report, kept, progress = trained
    assert report.steps == STEPS
    assert report.perplexity_after < 0.85 * report.perplexity_before
    assert {"adapter_model.safetensors", "adapter_config.json", "report.json"} <= {path.name for path in kept.iterdir()}
    saved = json.loads((kept / "report.json").read_text(encoding="utf-8"))
    assert saved["base"]["name"] == "SmolLM2-135M-Instruct (bundled)"
    assert saved["texts"][0]["words"] > 3000 and len(saved["texts"][0]["sha256"]) == 64
    assert saved["perplexity_after"] == report.perplexity_after and saved["peak_memory_mb"] > 100
    assert saved["adapter_sha256"] and saved["minutes"] > 0
    steps = [item for item in progress if item.stage == "training"]
    assert [item.step for item in steps] == list(range(1, STEPS + 1))
    assert all(item.tokens_per_s > 0 and item.loss > 0 for item in steps)
    assert steps[-1].held_out_perplexity is not None and steps[-1].seconds_left == 0


def test_the_saved_voice_reloads_to_the_same_greedy_text(trained: Any, session_profile: Path) -> None:
    import torch

    from assistant.engine.models import load_model

    report, kept, _progress = trained
    install(kept)
    voiced = load_model(device="cpu", dtype="float32", quantize="none", voice="marsh")
    assert voiced.voice == "marsh"
    tokenizer = voiced.tokenizer
    prompt = tokenizer(report.samples["prompt"], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        output = voiced.model.generate(
            input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False
        )
    assert tokenizer.decode(output[0, prompt.shape[1] :]) == report.samples["voice"]
    # Full-precision weights have the voice merged in; switching it off gives them back bit for bit.
    from assistant.engine.voices import switch_voice

    layer = voiced.model.model.layers[0].self_attn.q_proj
    original = layer.weight.detach().clone()
    assert switch_voice(voiced, None) == "" and not torch.equal(layer.weight, original)
    base = load_model(device="cpu", dtype="float32", quantize="none")
    assert torch.equal(layer.weight, base.model.model.layers[0].self_attn.q_proj.weight)
    assert switch_voice(voiced, "marsh") == "marsh" and torch.equal(layer.weight, original)


def test_a_voiced_4bit_model_stays_int4_on_the_same_step_and_keeps_the_voice(
    trained: Any, loaded_model: Any, marsh_texts: VoiceTexts
) -> None:
    """int4 rounding would lose a voice merged into the weights; beside them, at full precision, it is all there."""
    from assistant.core.voice_texts import windows
    from assistant.engine.generate import Engine
    from assistant.engine.models import load_model
    from assistant.engine.voices import perplexity

    install(trained[1])
    voiced = load_model(device="cpu", voice="marsh")
    assert loaded_model.weights == voiced.weights == "int4" and voiced.voice == "marsh"
    assert Engine(voiced).decode_path == Engine(loaded_model).decode_path  # the native int4 step where it runs

    def encode(text: str) -> list[int]:
        return list(voiced.tokenizer(text, add_special_tokens=False)["input_ids"])

    held_out = windows(marsh_texts.held_out, encode, 128)[:4]
    base, with_voice = perplexity(loaded_model.model, held_out, "cpu"), perplexity(voiced.model, held_out, "cpu")
    assert with_voice < 0.85 * base, (base, with_voice)


def test_a_voice_merged_into_bf16_weights_is_kept(trained: Any, marsh_texts: VoiceTexts) -> None:
    """What a GPU runs: full-precision layers in bf16 get the voice merged in, and bf16 rounding does not lose it."""
    import torch

    from assistant.core.voice_texts import windows
    from assistant.engine.models import load_model
    from assistant.engine.voices import perplexity, switch_voice

    install(trained[1])
    model = load_model(device="cpu", dtype="bfloat16", quantize="none")
    assert model.model.dtype == torch.bfloat16

    def encode(text: str) -> list[int]:
        return list(model.tokenizer(text, add_special_tokens=False)["input_ids"])

    held_out = windows(marsh_texts.held_out, encode, 128)[:4]
    base = perplexity(model.model, held_out, "cpu")
    assert switch_voice(model, "marsh") == "marsh"
    assert perplexity(model.model, held_out, "cpu") < 0.85 * base


def test_switching_voices_reloads_nothing_and_the_base_comes_back_exactly(
    trained: Any, loaded_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForCausalLM

    from assistant.engine import models
    from assistant.engine.generate import Engine

    install(trained[1])
    fresh = Engine(models.load_model(device="cpu", voice="marsh"))
    engine = Engine(loaded_model)
    settings = SamplerSettings(temperature=0, max_new_tokens=16)
    prompt = Prompt(text="Verily, the grey heron")
    base_text = engine.generate(prompt, settings)

    def no_loading(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("switching a voice loaded the model again")

    monkeypatch.setattr(models, "load_model", no_loading)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_loading)
    path = engine.decode_path
    try:
        engine.set_voice("marsh")
        assert engine.voice == "marsh" and engine.decode_path == path
        voiced_text = engine.generate(prompt, settings)  # the same prompt: keys cached in the base voice are not reused
        assert voiced_text != base_text and voiced_text == fresh.generate(prompt, settings)
        with pytest.raises(ModelError, match="There is no voice named 'fog'"):
            engine.set_voice("fog")
        assert engine.voice == "marsh" and engine.generate(prompt, settings) == voiced_text
        engine.set_voice(None)
        assert engine.voice == "" and engine.generate(prompt, settings) == base_text
    finally:
        engine.set_voice(None)


def test_a_voice_learnt_on_another_model_is_refused(trained: Any) -> None:
    from assistant.engine.models import load_model

    _report, kept, _progress = trained
    folder = install(kept)
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    report["base"].update(name="Llama-3-8B.Q4_K_M.gguf", fingerprint="0" * 64)
    (folder / "report.json").write_text(json.dumps(report), encoding="utf-8")
    with pytest.raises(ModelError, match=r"'marsh' was learnt on Llama-3-8B.Q4_K_M.gguf, not on SmolLM2"):
        load_model(device="cpu", quantize="none", voice="marsh")
    with pytest.raises(ModelError, match="There is no voice named 'fog'"):
        load_model(device="cpu", quantize="none", voice="fog")


def test_stop_keeps_the_best_adapter_so_far(training_model: Any, marsh_texts: VoiceTexts) -> None:
    from assistant.engine.voices import TrainingStopped, read_voice, train_voice, voice_folder

    cancel = CancelToken()

    def stop_after_two(progress: Any) -> None:
        if progress.step == 2:
            cancel.cancel()

    quick = options(sample_tokens=4, max_eval_windows=2)
    report = train_voice(training_model, marsh_texts, "early", quick, progress=stop_after_two, cancel=cancel)
    assert report.stopped and report.steps == 2
    assert report.perplexity_after <= report.perplexity_before
    assert read_voice("early").report["stopped"] is True
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(TrainingStopped, match="stopped before it began; nothing was saved"):
        train_voice(training_model, marsh_texts, "never", quick, cancel=cancel)
    assert not voice_folder("never").exists()


def test_training_needs_full_precision_weights_and_a_free_name(
    loaded_model: Any, training_model: Any, marsh_texts: VoiceTexts, trained: Any
) -> None:
    from assistant.core.errors import InputError
    from assistant.engine.voices import train_voice

    with pytest.raises(ModelError, match="full-precision weights"):
        train_voice(loaded_model, marsh_texts, "int4", options())
    install(trained[1])
    with pytest.raises(InputError, match="A voice named 'marsh' exists already"):
        train_voice(training_model, marsh_texts, "marsh", options())
    with pytest.raises(InputError, match="A voice name is"):
        train_voice(training_model, marsh_texts, "../escape", options())


def test_the_app_session_switches_and_learns_voices(
    trained: Any, loaded_model: Any, marsh_texts: VoiceTexts, session_profile: Path
) -> None:
    """What the app's worker calls: set_voice (no reload, the status bar's ModelInfo says the voice) and learn_voice
    (a full-precision copy loaded apart for the training; the session's own model untouched)."""
    from assistant.core.errors import InputError
    from assistant.engine.generate import Engine
    from assistant.engine.remote import RemoteSession
    from assistant.engine.session import EngineSession
    from assistant.engine.voices import read_voice

    install(trained[1])
    session = EngineSession(Engine(loaded_model))
    weights = loaded_model.model.model.layers[0].self_attn.q_proj.group.tensors()
    try:
        assert session.set_voice("marsh").voice == "marsh"
        with pytest.raises(ModelError, match="no voice named"):
            session.set_voice("fog")
        assert session.describe().voice == "marsh"
        stages: list[str] = []
        report = session.learn_voice(
            marsh_texts,
            "heron",
            options(max_steps=2, sample_tokens=2, max_eval_windows=1),
            loading=lambda s, _f: stages.append(s),
        )
        assert report.steps == 2 and read_voice("heron").report["steps"] == 2 and stages
        assert session.describe().voice == "marsh" and session.describe().weights == "int4"
        assert all(
            value.equal(loaded_model.model.model.layers[0].self_attn.q_proj.group.tensors()[key])
            for key, value in weights.items()
        )
        assert session.set_voice("").voice == ""
    finally:
        session.set_voice("")
    with pytest.raises(InputError, match="a model on a server has none"):
        RemoteSession.set_voice(object.__new__(RemoteSession), "marsh")
