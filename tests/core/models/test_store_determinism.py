"""The weights file is the same bytes for the same tensors and metadata (the model id is its sha256)."""

import hashlib
import subprocess
import sys

CODE = """
import hashlib, sys, torch
from gemini_cmr.core.models.store import save_tensors
t = {"b.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.ones(4, dtype=torch.float16)}
save_tensors(sys.argv[1], t, metadata={"kind": "gemini-gan", "format": "pt", "z": "1", "y": "2"})
"""


def test_saved_weights_are_the_same_bytes_in_every_process(tmp_path):
    """safetensors orders the metadata by a per-process hash map: several fresh processes must agree."""
    digests = set()
    for i in range(4):
        out = tmp_path / f"w{i}.safetensors"
        subprocess.run([sys.executable, "-c", CODE, str(out)], check=True)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1
    from gemini_cmr.core.models.store import load_tensors

    t = load_tensors(tmp_path / "w0.safetensors")
    assert t["b.weight"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
