"""The README quickstart script in --quick mode, end to end on real LFW faces."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quickstart_quick_mode(shared_data, tmp_path):
    out = tmp_path / "quickstart"
    env = dict(os.environ, DCAL_LFW=str(shared_data / "lfw"), HF_HUB_OFFLINE="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(["bash", str(REPO / "benchmarks" / "quickstart.sh"), "--quick", str(out)],
                            capture_output=True, text=True, env=env, timeout=1500)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    assert json.loads((out / "1-check.out").read_text())["images"] == 13233
    assert (out / "run" / "best" / "model.safetensors").is_file()
    enrolled = json.loads((out / "4-enroll.out").read_text())
    assert enrolled["enrolled"] == enrolled["images"] > 0
    match = [json.loads(line) for line in (out / "5-match.out").read_text().splitlines() if line.strip()]
    assert match[0]["candidates"]
    for name in ("6-verify-same.out", "7-verify-twins.out"):
        verdict = json.loads((out / name).read_text())
        assert set(verdict) >= {"same_person", "score", "threshold", "cosine"}
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["data"]["positive"] == 500
    assert metrics["scorers"]["head"]["twins"]["available"] is True
