"""Network pickles in the StyleGAN2-ADA / StyleGAN3 layout are read as data: persistent objects
become inert records whose state dict equals the network's, and a pickle carrying code is
refused (or its code left as text) with a marker file proving nothing ran."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys
import textwrap

import numpy
import pytest
import torch
from latentgraph.nodes.common.files import CheckpointError
from latentgraph.nodes.common.safe_pickle import (
    PersistentRecord,
    RefusedGlobal,
    safe_load,
    safe_loads,
    state_dict_of,
)

# A stand-in for the training code's persistence module: the class source travels in the
# pickle and a normal unpickle execs it, as the original does.
PERSISTENCE = '''
import copy, inspect, sys, types

def _reconstruct_persistent_obj(meta):
    module = types.ModuleType("_reloaded_nets")
    module.__source__ = meta["module_src"]
    sys.modules[module.__name__] = module
    exec(meta["module_src"], module.__dict__)
    cls = getattr(module, meta["class_name"])
    obj = cls.__new__(cls)
    obj.__dict__.update(meta["state"])
    return obj

def persistent_class(orig):
    module = sys.modules[orig.__module__]
    source = getattr(module, "__source__", None) or inspect.getsource(module)

    class Decorator(orig):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._init_args = copy.deepcopy(args)
            self._init_kwargs = copy.deepcopy(kwargs)

        def __reduce__(self):
            fields = list(super().__reduce__()) + [None, None, None]
            meta = dict(type="class", version=6, module_src=source,
                        class_name=orig.__name__, state=fields[2])
            return (_reconstruct_persistent_obj, (meta,), None)

    Decorator.__name__ = orig.__name__
    return Decorator
'''

# The networks' module; executing its source (as a normal unpickle does) writes the marker.
NETS = '''
import os
import torch
from torch_utils import persistence

if os.environ.get("LG_SAFE_PICKLE_MARKER"):
    open(os.environ["LG_SAFE_PICKLE_MARKER"], "w").write("module source ran")

@persistence.persistent_class
class Layer(torch.nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(cout, cin))
        self.register_buffer("scale", torch.rand(cout).half())
        self.register_buffer("scratch", torch.zeros(1), persistent=False)

@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self, z_dim, w_dim, mapping_kwargs=None):
        super().__init__()
        self.const = torch.nn.Parameter(torch.randn(w_dim, 2, 2))
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.mapping = Layer(z_dim, w_dim)
        self.synthesis = Layer(w_dim, 3)
        self.nothing = None
'''

FAKE_MODULES = ("torch_utils", "torch_utils.persistence", "lg_fake_nets", "_reloaded_nets")


@pytest.fixture
def fake_training_code(tmp_path, monkeypatch):
    """The fake training modules importable while the test builds pickles; ``forget()`` removes
    them so that loading cannot use them."""
    code = tmp_path / "code"
    (code / "torch_utils").mkdir(parents=True)
    (code / "torch_utils" / "__init__.py").write_text("")
    (code / "torch_utils" / "persistence.py").write_text(PERSISTENCE)
    (code / "lg_fake_nets.py").write_text(NETS)
    monkeypatch.delenv("LG_SAFE_PICKLE_MARKER", raising=False)
    sys.path.insert(0, str(code))

    def forget() -> None:
        if str(code) in sys.path:
            sys.path.remove(str(code))
        for name in FAKE_MODULES:
            sys.modules.pop(name, None)

    import lg_fake_nets  # type: ignore[import-not-found]

    yield lg_fake_nets, forget
    forget()


def network_pickle(nets, path, protocol=pickle.DEFAULT_PROTOCOL):
    torch.manual_seed(0)
    net = nets.Generator(8, 4, mapping_kwargs={"num_layers": 2})
    data = {"G_ema": net,
            "training_set_kwargs": {"resolution": 4, "xflip": False, "mean": numpy.float32(0.5),
                                    "table": numpy.arange(6, dtype=numpy.int16).reshape(2, 3)}}
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return net


@pytest.mark.parametrize("protocol", [2, 4])
def test_network_pickle_reads_as_records_and_nothing_runs(fake_training_code, tmp_path,
                                                          monkeypatch, protocol):
    nets, forget = fake_training_code
    path = tmp_path / "network.pkl"
    net = network_pickle(nets, path, protocol)
    expected = net.state_dict()

    # A normal unpickle with the training code present runs the module source.
    control = tmp_path / "control-marker"
    monkeypatch.setenv("LG_SAFE_PICKLE_MARKER", str(control))
    with open(path, "rb") as f:
        pickle.load(f)
    assert control.exists()

    forget()
    marker = tmp_path / "marker"
    monkeypatch.setenv("LG_SAFE_PICKLE_MARKER", str(marker))
    loaded = safe_load(path)
    assert not marker.exists()
    assert "torch_utils.persistence" not in sys.modules

    record = loaded["G_ema"]
    assert isinstance(record, PersistentRecord) and record.class_name == "Generator"
    assert record.init_args == (8, 4) and record.init_kwargs == {"mapping_kwargs": {"num_layers": 2}}
    assert "LG_SAFE_PICKLE_MARKER" in record.module_src  # kept as text
    kwargs = loaded["training_set_kwargs"]
    assert kwargs["resolution"] == 4 and kwargs["mean"] == numpy.float32(0.5)
    assert numpy.array_equal(kwargs["table"], numpy.arange(6, dtype=numpy.int16).reshape(2, 3))

    state = state_dict_of(record)
    assert list(state) == list(expected)  # order and names as Module.state_dict, no scratch
    for key, value in expected.items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
    assert list(state_dict_of(record.state["_modules"]["mapping"], "mapping.")) == [
        "mapping.weight", "mapping.scale"]


def test_torch_save_zip_of_a_network(fake_training_code, tmp_path, monkeypatch):
    nets, forget = fake_training_code
    torch.manual_seed(1)
    net = nets.Generator(3, 2)
    path = tmp_path / "network.pt"
    torch.save({"G_ema": net, "step": 7}, path)
    forget()
    marker = tmp_path / "marker"
    monkeypatch.setenv("LG_SAFE_PICKLE_MARKER", str(marker))
    loaded = safe_load(path)
    assert not marker.exists() and loaded["step"] == 7
    state = state_dict_of(loaded["G_ema"])
    assert state.keys() == net.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


class Reduce:
    """An object that pickles as the call ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker):
    command = f"touch {marker}"
    write = f"open({str(marker)!r}, 'w').write('ran')"
    return {
        "os.system": (Reduce(os.system, command), f"{os.system.__module__}.system"),
        "exec": (Reduce(builtins.exec, write), "builtins.exec"),
        "eval": (Reduce(builtins.eval, write), "builtins.eval"),
        "Popen": (Reduce(subprocess.Popen, ["touch", str(marker)]), "subprocess.Popen"),
        "getattr": (Reduce(builtins.getattr, "text", "upper"), "builtins.getattr"),
        "torch module": (torch.nn.Linear(2, 2), "torch.nn.modules.linear.Linear"),
    }


@pytest.mark.parametrize("name", ["os.system", "exec", "eval", "Popen", "getattr", "torch module"])
@pytest.mark.parametrize("zipped", [False, True])
def test_code_payloads_are_refused(tmp_path, name, zipped):
    marker = tmp_path / "marker"
    payload, refused = payloads(marker)[name]
    # Hidden where networks keep their arguments, inside an otherwise valid file.
    data = {"G_ema": torch.zeros(2), "training_set_kwargs": {"kwargs": [payload]}}
    path = tmp_path / ("evil.pt" if zipped else "evil.pkl")
    if zipped:
        torch.save(data, path)
    else:
        path.write_bytes(pickle.dumps(data))
    with pytest.raises(RefusedGlobal) as err:
        safe_load(path)
    assert f"'{refused}'" in str(err.value) and path.name in str(err.value)
    assert "nothing in it was run" in str(err.value)
    assert not marker.exists()


def test_module_source_in_a_crafted_record_is_left_inert(tmp_path):
    marker = tmp_path / "marker"
    source = textwrap.dedent(f"""
        open({str(marker)!r}, "w").write("ran")
        class Evil:
            pass
    """)
    meta = {"type": "class", "version": 6, "module_src": source, "class_name": "Evil",
            "state": {"_parameters": {"w": torch.ones(2)}, "_buffers": {}, "_modules": {}}}

    def _reconstruct_persistent_obj(meta):  # stands for the training code's function
        raise AssertionError("never called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    fake = type(sys)("torch_utils.persistence")
    fake._reconstruct_persistent_obj = _reconstruct_persistent_obj  # type: ignore[attr-defined]
    sys.modules["torch_utils"] = type(sys)("torch_utils")
    sys.modules["torch_utils.persistence"] = fake
    try:
        data = pickle.dumps({"G": Reduce(_reconstruct_persistent_obj, meta)})
    finally:
        del sys.modules["torch_utils.persistence"], sys.modules["torch_utils"]
    record = safe_loads(data, "evil.pkl")["G"]
    assert isinstance(record, PersistentRecord) and record.module_src == source
    assert torch.equal(state_dict_of(record)["w"], torch.ones(2))
    assert not marker.exists()


def test_malformed_and_legacy_files(tmp_path):
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(CheckpointError, match="junk.pkl is not a readable pickle"):
        safe_load(junk)
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(1)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy torch.save"):
        safe_load(legacy)
    with pytest.raises(CheckpointError, match="not a network record"):
        state_dict_of({"w": torch.ones(1)}, "G.")
