"""Network pickles are read as data: a pickle carrying a code payload is refused with
RefusedGlobal naming the file and the global and nothing runs (a sentinel file stays absent);
foreign classes, StyleGAN3 records and non-network pickles get messages naming the node's input."""

from __future__ import annotations

import os
import pickle
import shutil

import pytest
import torch
from conftest import CPU, GOLDEN
from graph_helpers import Graph
from latentgraph import Executor
from latentgraph.executor import Folders, NodeFailed
from latentgraph.nodes.common.files import CheckpointError
from latentgraph.nodes.common.safe_pickle import RefusedGlobal, safe_load
from latentgraph.nodes.stylegan.loading import load_generator
from network_pickles import network_pickle, persistence_stand_in, record_of


class Payload:
    """Pickles as ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture
def generator(conditional):
    return conditional


def run_loader(folders: Folders, name: str) -> NodeFailed:
    g = Graph()
    g.node("LG_LoadStyleGAN", id="load", path=f"gan/{name}")
    with pytest.raises(NodeFailed) as failure:
        Executor(device="cpu", folders=folders).run(g.build(), targets=["load"])
    assert (failure.value.node_id, failure.value.error.input_name) == ("load", "path")
    return failure.value


@pytest.fixture
def gan_dir(folders: Folders):
    (folders.models / "gan").mkdir()
    return folders.models / "gan"


def test_code_payload_is_refused_and_nothing_runs(folders, gan_dir, tmp_path, generator):
    sentinel = tmp_path / "payload-ran"
    path = gan_dir / "evil.pkl"
    network_pickle(path, generator, {}, extra={"augment_pipe": Payload(f"touch {sentinel}")})
    with pytest.raises(RefusedGlobal) as refused:
        safe_load(path)
    global_name = f"{os.system.__module__}.system"  # posix.system
    assert "gan/evil.pkl" in str(refused.value) and global_name in str(refused.value)
    failure = run_loader(folders, "evil.pkl")
    assert "evil.pkl" in str(failure) and global_name in str(failure) and "nothing in it was run" in str(failure)
    assert not sentinel.exists()


def test_the_payload_really_runs_under_plain_pickle(tmp_path):
    """The control: the same payload, unpickled the ordinary way, does run."""
    sentinel = tmp_path / "control-ran"
    data = pickle.dumps({"augment_pipe": Payload(f"touch {sentinel}")})
    pickle.loads(data)  # what a plain load of such a file does
    assert sentinel.exists()


def test_foreign_class_in_a_network_is_refused(folders, gan_dir, generator):
    record = record_of(generator, {})
    record.meta["state"]["_modules"]["extra"] = torch.nn.Linear(2, 2)  # not a persistent class
    with persistence_stand_in(), open(gan_dir / "foreign.pkl", "wb") as f:
        pickle.dump({"G_ema": record}, f)
    failure = run_loader(folders, "foreign.pkl")
    assert "foreign.pkl" in str(failure) and "torch.nn.modules.linear.Linear" in str(failure)


def test_stylegan3_record_is_refused(folders, gan_dir, generator):
    record = record_of(generator, {})
    synthesis = record.meta["state"]["_modules"]["synthesis"]
    synthesis.meta["state"]["_modules"]["input"] = synthesis.meta["state"]["_modules"].pop("b4")
    with persistence_stand_in(), open(gan_dir / "sg3.pkl", "wb") as f:
        pickle.dump({"G_ema": record}, f)
    failure = run_loader(folders, "sg3.pkl")
    assert "StyleGAN3" in str(failure) and "does not implement" in str(failure)


def test_pickle_without_a_generator(folders, gan_dir):
    with open(gan_dir / "data.pkl", "wb") as f:
        pickle.dump({"numbers": [1, 2, 3]}, f)
    failure = run_loader(folders, "data.pkl")
    assert "not a network pickle with a G_ema network" in str(failure) and "numbers" in str(failure)


def test_state_dict_errors(folders, gan_dir):
    from safetensors.torch import load_file, save_file

    sd = load_file(GOLDEN / "conditional_weights.safetensors")
    del sd["synthesis.b8.conv0.weight"]
    save_file(sd, gan_dir / "broken.safetensors")
    assert "synthesis.b8.conv0.weight" in str(run_loader(folders, "broken.safetensors"))
    torch.save({"weights": torch.zeros(2), "payload": Payload("true")}, gan_dir / "evil.pt")
    assert "nothing in it was run" in str(run_loader(folders, "evil.pt"))
    shutil.copy(GOLDEN / "conditional_cases.safetensors", gan_dir / "cases.safetensors")
    assert "no StyleGAN2 generator" in str(run_loader(folders, "cases.safetensors"))
    (gan_dir / "notes.txt").write_text("hi")
    assert "not a StyleGAN2 generator file" in str(run_loader(folders, "notes.txt"))


def test_refusal_names_the_file_not_the_disk(gan_dir, generator):
    network_pickle(gan_dir / "ok.pkl", generator, {})
    load_generator(gan_dir / "ok.pkl", CPU, torch.float32)  # a clean one loads
    (gan_dir / "bad.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError) as err:
        load_generator(gan_dir / "bad.pkl", CPU, torch.float32)
    assert "gan/bad.pkl" in str(err.value) and str(gan_dir.parent) not in str(err.value)
