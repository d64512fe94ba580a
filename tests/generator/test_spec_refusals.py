"""Run spec values that cannot make a sensible run are refused up front, with messages
that name the flag (or item) and the value, never an internal repr."""

import json
import math

import pytest

from generator.errors import SpecError
from generator.faults import Fault
from generator.spec import PeerOptions, RunSpec
from peer.emulation import LinkShape
from testbed.base import prepare_run

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("kwargs, message", [
    ({"latency": NAN}, "--latency must be a finite number >= 0 (seconds), got nan"),
    ({"latency": INF}, "--latency must be a finite number >= 0 (seconds), got inf"),
    ({"latency": -0.1}, "--latency must be a finite number >= 0 (seconds), got -0.1"),
    ({"jitter": -1.0}, "--jitter must be a finite number >= 0 (seconds), got -1"),
    ({"jitter": NAN}, "--jitter must be a finite number >= 0 (seconds), got nan"),
    ({"bandwidth": INF}, "--bandwidth must be a finite number >= 0 (bytes/s, 0: unlimited), got inf"),
    ({"bandwidth": -5.0}, "--bandwidth must be a finite number >= 0 (bytes/s, 0: unlimited), got -5"),
    ({"loss": 2.0}, "--loss must be in [0, 1], got 2"),
    ({"loss": -0.5}, "--loss must be in [0, 1], got -0.5"),
    ({"loss": NAN}, "--loss must be in [0, 1], got nan"),
    ({"loss": INF}, "--loss must be in [0, 1], got inf"),
    ({"idle": 0.0}, "--idle must be a finite number > 0 (seconds), got 0"),
    ({"idle": -1.0}, "--idle must be a finite number > 0 (seconds), got -1"),
    ({"idle": NAN}, "--idle must be a finite number > 0 (seconds), got nan"),
    ({"idle": INF}, "--idle must be a finite number > 0 (seconds), got inf"),
    ({"link_deadline": 0.0}, "--link-deadline must be a finite number > 0 (seconds), got 0"),
    ({"link_deadline": -3.0}, "--link-deadline must be a finite number > 0 (seconds), got -3"),
    ({"link_deadline": NAN}, "--link-deadline must be a finite number > 0 (seconds), got nan"),
    ({"link_deadline": INF}, "--link-deadline must be a finite number > 0 (seconds), got inf"),
    ({"max_runtime": INF}, "max_runtime must be a finite number > 0 (seconds), got inf"),
    ({"handshake_timeout": 0}, "handshake_timeout must be a finite number > 0 (seconds), got 0"),
    ({"idle": "2"}, "--idle must be a finite number > 0 (seconds), got '2'"),
    ({"latency": True}, "--latency must be a finite number >= 0 (seconds), got True"),
])
def test_peer_options_refuse_bad_numbers(kwargs, message):
    with pytest.raises(SpecError) as e:
        PeerOptions(**kwargs)
    assert str(e.value) == message


@pytest.mark.parametrize("item, message", [
    ("0-1:loss=2", "--link-shape 0-1:loss=2: loss must be in [0, 1], got 2"),
    ("0-1:latency=nan", "--link-shape 0-1:latency=nan: latency must be a finite number >= 0 (seconds), got nan"),
    ("0-1:latency=inf", "--link-shape 0-1:latency=inf: latency must be a finite number >= 0 (seconds), got inf"),
    ("1-2:jitter=-0.01", "--link-shape 1-2:jitter=-0.01: jitter must be a finite number >= 0 (seconds), got -0.01"),
    ("0-2:bandwidth=-5",
     "--link-shape 0-2:bandwidth=-5: bandwidth must be a finite number >= 0 (bytes/s, 0: unlimited), got -5"),
    ("0-1:loss=nan", "--link-shape 0-1:loss=nan: loss must be in [0, 1], got nan"),
    ("0-1:latency=x", "--link-shape 0-1:latency=x: latency must be a number, got 'x'"),
    ("0:latency=1", "--link-shape expects U-V:KEY=VALUE,..., got '0:latency=1'"),
])
def test_link_shape_items_are_refused_by_name(item, message):
    with pytest.raises(SpecError) as e:
        PeerOptions(link_shapes=(item,))
    assert str(e.value) == message


def test_link_shape_error_has_no_internal_repr():
    with pytest.raises(ValueError) as e:
        LinkShape(latency=-0.1)
    assert str(e.value) == "latency must be a finite number >= 0 (seconds), got -0.1"
    assert "LinkShape(" not in str(e.value)
    with pytest.raises(ValueError, match=r"^loss must be in \[0, 1\], got 1.5$"):
        LinkShape.parse("loss=1.5")


@pytest.mark.parametrize("text, message", [
    ("kill:2@-1", "--fault kill:2@-1: time must be a finite number >= 0 (seconds from the start), got -1"),
    ("kill:2@nan", "--fault kill:2@nan: time must be a finite number >= 0 (seconds from the start), got nan"),
    ("kill:2@inf", "--fault kill:2@inf: time must be a finite number >= 0 (seconds from the start), got inf"),
    ("partition:0-1@-0.5",
     "--fault partition:0-1@-0.5: time must be a finite number >= 0 (seconds from the start), got -0.5"),
    ("kill:2@deliveries=-5", "--fault kill:2@deliveries=-5: delivery count must be an integer >= 0, got -5"),
    ("kill:-1@1", "--fault kill:-1@1: peer ids must be integers >= 0, got -1"),
    ("pause:1,-3@0.5", "--fault pause:1,-3@0.5: peer ids must be integers >= 0, got -3"),
])
def test_faults_refuse_negative_and_non_finite_values(text, message):
    with pytest.raises(SpecError) as e:
        Fault.parse(text)
    assert str(e.value) == message


@pytest.mark.parametrize("data", [
    {"action": "kill", "peers": [2], "at": -1},
    {"action": "kill", "peers": [2], "at": "1"},
    {"action": "kill", "peers": [2], "at": NAN},
    {"action": "kill", "peers": [2], "after_deliveries": -1},
    {"action": "kill", "peers": [2], "after_deliveries": 1.5},
    {"action": "kill", "peers": [-2], "at": 1},
    {"action": "kill", "peers": ["2"], "at": 1},
    {"action": "partition", "edges": [[0, -1]], "at": 1},
    {"action": "partition", "edges": [[0, 1, 2]], "at": 1},
])
def test_fault_from_dict_applies_the_same_checks(data):
    with pytest.raises(SpecError, match="^--fault "):
        Fault.from_dict(data)


def test_valid_values_still_pass():
    opts = PeerOptions(idle=0.5, link_deadline=3, latency=0.01, jitter=0.0, loss=1.0, bandwidth=1e6,
                       link_shapes=("0-1:loss=0,latency=0.2",))
    assert opts.edge_shapes()[(0, 1)] == LinkShape(0.2, 0.0, 0.0, 1e6)
    assert Fault.parse("kill:0@0").at_start and Fault.parse("kill:1@deliveries=0").after_deliveries == 0


@pytest.mark.parametrize("options, faults, message", [
    ({"latency": NAN}, [], "--latency must be a finite number >= 0 (seconds), got nan"),
    ({"loss": 2}, [], "--loss must be in [0, 1], got 2"),
    ({"idle": 0}, [], "--idle must be a finite number > 0 (seconds), got 0"),
    ({"link_deadline": -1}, [], "--link-deadline must be a finite number > 0 (seconds), got -1"),
    ({"link_shapes": ["0-1:loss=2"]}, [], "--link-shape 0-1:loss=2: loss must be in [0, 1], got 2"),
    ({"link_shapes": "0-1:loss=0.5"}, [], "link_shapes must be a list"),
    ({}, [{"action": "kill", "peers": [2], "at": -1}], "--fault kill:2@-1: time must be"),
])
def test_from_dict_applies_the_same_checks(options, faults, message):
    data = RunSpec.parse("mesh", 3).to_dict()
    data["options"].update(options)
    data["faults"] = faults
    with pytest.raises(SpecError) as e:
        RunSpec.from_dict(data)
    assert str(e.value).startswith(message)


def test_loading_a_spec_json_with_nan_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "spec.json"
    data = RunSpec.parse("mesh", 3).to_dict()
    data["options"]["latency"] = NAN
    path.write_text(json.dumps(data))  # Python writes NaN, which other JSON readers refuse
    with pytest.raises(SpecError) as e:
        RunSpec.load(path)
    assert str(e.value) == f"{path}: --latency must be a finite number >= 0 (seconds), got nan"


def test_spec_json_is_always_strict_json(tmp_path):
    spec = RunSpec.parse("mesh", 3, options=PeerOptions(latency=0.01))
    spec.write(tmp_path / "spec.json")
    json.loads((tmp_path / "spec.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
    object.__setattr__(spec.options, "latency", NAN)  # past every check: the backstop still holds
    with pytest.raises(SpecError, match="strict JSON"):
        spec.to_json()
    with pytest.raises(SpecError):
        spec.write(tmp_path / "again.json")
    assert not (tmp_path / "again.json").exists() or "NaN" not in (tmp_path / "again.json").read_text()


@pytest.mark.parametrize("topology", ["er:p=nan", "ws:p=inf,k=2"])
def test_non_finite_topology_parameters_are_refused(topology):
    with pytest.raises(SpecError, match="must be a finite number, got (nan|inf)"):
        RunSpec.parse(topology, 8, seed=1)


def test_link_shape_on_a_non_edge_is_refused_where_the_graph_is_known(tmp_path):
    spec = RunSpec.parse("cycle", 5, options=PeerOptions(link_shapes=("0-2:latency=0.1",)))
    with pytest.raises(SpecError) as e:
        spec.graph()
    assert str(e.value) == "--link-shape 0-2:latency=0.1: 0-2 is not an edge of cycle-5"
    with pytest.raises(SpecError, match="not an edge"):
        spec.prediction_input()  # what `p2p run`/`render` predict on
    with pytest.raises(SpecError, match="not an edge"):
        prepare_run(spec, tmp_path / "runs", None)
    assert not (tmp_path / "runs").exists()
    out_of_range = RunSpec.parse("mesh", 3, options=PeerOptions(link_shapes=("1-7:loss=0.5",)))
    with pytest.raises(SpecError, match=r"^--link-shape 1-7:loss=0.5: 1-7 is not an edge of mesh-3$"):
        out_of_range.graph()
    # an edge, spelled either way round, is fine
    ok = RunSpec.parse("cycle", 5, options=PeerOptions(link_shapes=("1-0:latency=0.1", "3-4:loss=0.1")))
    assert ok.graph().number_of_edges() == 5


def test_faults_are_checked_with_the_graph_before_any_prediction():
    spec = RunSpec.parse("mesh", 3, faults=(Fault.parse("kill:7@1"),))
    with pytest.raises(SpecError, match=r"^--fault kill:7@1: no peer 7"):
        spec.prediction_input()


def test_messages_show_numbers_as_typed():
    for value, shown in ((-2.0, "-2"), (-0.1, "-0.1"), (-1e-7, "-1e-07"), (math.inf, "inf")):
        with pytest.raises(SpecError) as e:
            PeerOptions(latency=value)
        assert str(e.value).endswith(f"got {shown}")
