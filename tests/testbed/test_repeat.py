"""Repeats, records and reruns on real local runs (small: cycle-5, mesh-4), and their pure parts."""

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from generator.spec import PeerOptions, RunSpec
from testbed.cli import main
from testbed.record import REPO_ROOT, src_hash
from testbed.repeat import repeat_specs

RECORD_KEYS = {"p2p_version", "src_hash", "backend", "kernel", "arp_gc_thresh3", "cpu_count", "python"}


def test_seeds_vary_across_repeats_unless_given():
    gossip = RunSpec.parse("cycle", 5, protocol="gossip")
    drawn = repeat_specs(gossip, 4, seed_given=False)
    assert drawn[0] == gossip and len({s.seed for s in drawn}) == 4  # four draws from 2**31: equal ones fail
    fixed = RunSpec.parse("cycle", 5, protocol="gossip", seed=11)
    assert {s.seed for s in repeat_specs(fixed, 3, seed_given=True)} == {11}
    plain = RunSpec.parse("cycle", 5)
    assert [s.seed for s in repeat_specs(plain, 3, seed_given=False)] == [None] * 3  # nothing random
    lossy = dataclasses.replace(plain, options=PeerOptions(loss=0.2))
    seeds = [s.seed for s in repeat_specs(lossy, 3, seed_given=False)]
    assert None not in seeds and len(set(seeds)) == 3


def test_src_hash_is_build_image_shs_definition():
    script = ('{ find peer -type f -name "*.py" -not -path "*/__pycache__/*" -print0 | LC_ALL=C sort -z; '
              'printf "%s\\0" docker/Dockerfile; if [[ -f .dockerignore ]]; then printf "%s\\0" .dockerignore; fi; } '
              '| xargs -0 sha256sum | sha256sum | cut -d" " -f1')
    out = subprocess.run(["bash", "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert src_hash() == out.strip() and len(out.strip()) == 64


def _one(path: Path, pattern: str) -> Path:
    (found,) = path.glob(pattern)
    return found


def test_run_repeat_3(tmp_path, capsys):
    code = main(["run", "-t", "cycle", "-n", "5", "--backend", "local", "--out", str(tmp_path), "--repeat", "3",
                 "--no-plots"])
    assert code == 0
    group = _one(tmp_path, "cycle-5-repeat-*")
    data = json.loads((group / "repeats.json").read_text())
    assert data["k"] == 3 and data["failures"] == [] and data["seeds"] == [None] * 3
    assert data["stats"]["deliveries"] == {"kind": "exact", "values": [40, 40, 40], "exact": 40}
    assert data["stats"]["bytes"]["exact"] == 1040 and data["stats"]["bytes"]["values"] == [1040] * 3
    ttq = data["stats"]["time_to_quiescence"]
    assert ttq["kind"] == "interval" and ttq["n"] == 3 and ttq["ci"][0] <= ttq["mean"] <= ttq["ci"][1]
    runs = [group / r["run_id"] for r in data["runs"]]
    for rd in runs:
        record = json.loads((rd / "record.json").read_text())
        assert RECORD_KEYS <= set(record) and record["backend"] == "local" and record["src_hash"] == src_hash()
        assert json.loads((rd / "summary.json").read_text())["verdict"] == "OK"
    assert "40 exact" in capsys.readouterr().out


@pytest.mark.slow
def test_sweep_repeat_2_keeps_every_exact_count(tmp_path, capsys):
    code = main(["sweep", "-t", "cycle,mesh", "-n", "4", "--protocol", "v1,flood", "--repeat", "2", "--idle", "0.5",
                 "--backend", "local", "--out", str(tmp_path)])
    assert code == 0
    sweep = _one(tmp_path, "sweep-*")
    data = json.loads((sweep / "sweep.json").read_text())
    assert len(data["rows"]) == 8 and data["grid"]["repeat"] == 2 and len(data["cells"]) == 4
    expected = {("cycle-4", "v1"): 24, ("cycle-4", "flood"): 20, ("mesh-4", "v1"): 60, ("mesh-4", "flood"): 36}
    for cell in data["cells"]:
        d = cell["stats"]["deliveries"]
        assert d["kind"] == "exact" and d["values"] == [expected[(cell["label"], cell["protocol"])]] * 2, cell
        assert cell["failures"] == [] and len(cell["run_ids"]) == 2
    assert (sweep / "sweep.png").read_bytes()[:4] == b"\x89PNG" and (sweep / "sweep-runs.txt").is_file()
    assert "exact" in capsys.readouterr().out


def _run(tmp_path: Path, *extra: str) -> Path:
    assert main(["run", "-t", "mesh", "-n", "4", "--backend", "local", "--out", str(tmp_path), "--no-plots",
                 *extra]) == 0
    return (tmp_path / "latest").resolve()


def test_rerun_of_a_seeded_lossy_run_reproduces_its_delivery_set(tmp_path, capsys):
    orig = _run(tmp_path / "a", "--loss", "0.2", "--seed", "7", "--idle", "0.5")
    assert json.loads((orig / "summary.json").read_text())["missing_deliveries"] > 0  # the loss did act
    code = main(["rerun", str(orig), "--backend", "local", "--no-plots", "--out", str(tmp_path / "b")])
    assert code == 0
    new = _one(tmp_path / "b", "mesh-4-*")
    result = json.loads((new / "rerun.json").read_text())
    checks = {c["what"]: c for c in result["checks"]}
    assert result["ok"] and checks["delivery set"]["must_equal"] and checks["delivery set"]["equal"]
    assert checks["missing_deliveries"]["equal"] and json.loads((new / "spec.json").read_text())["seed"] == 7
    assert (orig / "logs" / "0.txt").read_text() and "REPRODUCED" in capsys.readouterr().out


def test_rerun_of_a_v1_run_keeps_its_counts_and_fails_on_a_changed_original(tmp_path, capsys):
    orig = _run(tmp_path / "a")
    assert main(["rerun", str(orig), "--backend", "local", "--no-plots", "--repeat", "2",
                 "--out", str(tmp_path / "b")]) == 0
    group = _one(tmp_path / "b", "mesh-4-rerun-*")
    checks = {c["what"]: c for c in json.loads((group / "rerun.json").read_text())["checks"]}
    assert checks["deliveries"]["new"] == [60, 60] and checks["deliveries"]["original"] == 60
    assert checks["bytes"]["must_equal"] and checks["bytes"]["equal"]
    assert "95% CI" in checks["time_to_quiescence"]["note"]
    # One line less in the original: the rerun must now say it is not reproduced.
    log = orig / "logs" / "1.txt"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[1:]))
    assert main(["rerun", str(orig), "--backend", "local", "--no-plots", "--out", str(tmp_path / "c")]) == 1
    assert "NOT REPRODUCED: delivery set" in capsys.readouterr().out


def test_compare_two_repeat_groups(tmp_path, capsys):
    for fanout in ("2", "3"):
        assert main(["run", "-t", "mesh", "-n", "4", "--protocol", "gossip", "--param", f"fanout={fanout}",
                     "--backend", "local", "--out", str(tmp_path), "--repeat", "2", "--no-plots"]) == 0
    a, b = sorted(tmp_path.glob("mesh-4-repeat-*"))
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    (pair,) = data["comparisons"]
    # fanout 3 on mesh-4 forwards to every neighbour: more deliveries than fanout 2, exactly
    assert pair["quantities"]["deliveries"]["test"] == "exact" and pair["quantities"]["deliveries"]["differ"]
    assert pair["quantities"]["time_to_quiescence"]["test"] == "welch"
    assert "Welch" in capsys.readouterr().out
    assert main(["compare", str(a), str(next(a.glob("mesh-4-2*"))), "--out", str(tmp_path / "cmp")]) == 2


class _Image:
    id = "sha256:abc"
    labels = {"p2p.src-hash": "f00"}


class _Images:
    def get(self, name):
        assert name == "p2p-peer:latest"
        return _Image()


class _Client:
    images = _Images()

    def version(self):
        return {"Version": "20.10.24"}

    def info(self):
        return {"Driver": "overlay2"}


class _DeadClient(_Client):
    def version(self):
        raise ConnectionError("engine went away")


def test_record_of_a_docker_backend_names_engine_and_image():
    from testbed.record import build_record

    rec = build_record("compose", _Client(), "p2p-peer:latest")
    assert (rec["docker_version"], rec["storage_driver"], rec["image_id"], rec["image_src_hash"]) == (
        "20.10.24", "overlay2", "sha256:abc", "f00")
    dead = build_record("compose", _DeadClient(), "p2p-peer:latest")  # a fact not read is unknown, not a failure
    assert dead["docker_version"] is None and "engine went away" in dead["engine_error"]
    assert "docker_version" not in build_record("local")


def test_repeat_refusals_are_one_line_errors(tmp_path, capsys):
    assert main(["run", "--repeat", "2", "--live", "--out", str(tmp_path)]) == 2
    assert main(["rerun", str(tmp_path / "nothing"), "--backend", "local"]) == 2
    err = capsys.readouterr().err
    assert "--live watches one run" in err and "no spec.json" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # refused before anything was created
