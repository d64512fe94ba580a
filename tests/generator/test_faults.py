import json

import pytest

from generator.errors import SpecError
from generator.faults import Fault, exactly_predictable, surviving_graph
from generator.predict import predict
from generator.spec import RunSpec
from generator.topologies import cycle_graph, mesh_graph


@pytest.mark.parametrize("text", ["kill:3@0", "kill:3@deliveries=20000", "pause:2@0.5", "restart:1,2@2",
                                  "partition:0-1,3-2@0.2", "heal:1-0@1"])
def test_fault_spelling_round_trips(text):
    fault = Fault.parse(text)
    assert Fault.parse(str(fault)) == fault
    assert Fault.from_dict(RunSpec.parse("mesh", 5, faults=(fault,)).to_dict()["faults"][0]) == fault


@pytest.mark.parametrize("text", ["explode:1@0", "kill@0", "kill:1", "kill:x@0", "partition:1@0", "kill:0-1@0",
                                  "pause:1@soon"])
def test_bad_faults_are_clear_errors(text):
    with pytest.raises(SpecError):
        Fault.parse(text)


def test_spec_with_faults_round_trips_through_json():
    spec = RunSpec.parse("mesh", 5, faults=(Fault.parse("kill:4@0"), Fault.parse("partition:0-1@0.5")))
    assert RunSpec.from_dict(spec.to_dict()) == spec


def test_kill_at_start_predicts_the_mesh_without_that_peer():
    faults = (Fault.parse("kill:4@0"),)
    g = surviving_graph(mesh_graph(5), faults)
    assert exactly_predictable(faults)
    assert predict(g).deliveries == 60 == predict(mesh_graph(4), "mesh").deliveries


def test_partition_from_start_predicts_the_cut_graph_until_healed():
    cut = (Fault.parse("partition:0-1@0"),)
    assert exactly_predictable(cut)
    assert predict(surviving_graph(cycle_graph(6), cut)).deliveries == 30  # a line of 6: one path per ordered pair
    healed = cut + (Fault.parse("heal:0-1@1"),)
    assert not exactly_predictable(healed)
    assert surviving_graph(cycle_graph(6), healed).number_of_edges() == 6
    assert not exactly_predictable((Fault.parse("kill:1@deliveries=10"),))


@pytest.mark.parametrize("text", ["shape:0-1:latency=0.2,loss=0.1@5", "shape:1-0,2-3:loss=0.5@deliveries=100",
                                  "flap:0-1@2,period=1,count=5", "flap:0-1,1-2@deliveries=50,period=1,count=2,down=0.2"])
def test_link_change_spelling_round_trips_through_spec_json(text):
    fault = Fault.parse(text)
    assert Fault.parse(str(fault)) == fault
    spec = RunSpec.parse("mesh", 5, faults=(fault,))
    assert RunSpec.from_dict(json.loads(spec.to_json())) == spec


def test_spec_json_of_old_faults_gains_no_link_change_keys():
    data = json.loads(RunSpec.parse("mesh", 5, faults=(Fault.parse("kill:4@0"),)).to_json())
    assert set(data["faults"][0]) == {"action", "peers", "edges", "at", "after_deliveries"}


@pytest.mark.parametrize("text", ["flap:0-1@2", "flap:0-1@2,period=1", "flap:0-1@2,period=0,count=2",
                                  "flap:0-1@2,period=1,count=0", "flap:0-1@2,period=1,count=2.5",
                                  "flap:0-1@2,period=1,count=2,down=1", "flap:0-1@2,period=1,count=2,down=0",
                                  "flap:0-1@2,period=1,count=2,speed=3", "flap:3@2,period=1,count=2",
                                  "shape:0-1@1", "shape:0-1:loss=2@1", "shape:0-1:foo=1@1", "shape:0-1:latency=-1@1",
                                  "shape:0-1:loss=0.1,loss=0.2@1", "kill:1@2,period=1", "partition:0-1@1,period=1,count=2",
                                  "shape:0-1:loss=0.1@1,period=1"])
def test_bad_link_changes_are_clear_errors(text):
    with pytest.raises(SpecError):
        Fault.parse(text)


def test_flap_steps_every_period_down_for_half_of_it_by_default():
    assert Fault.parse("flap:0-1@2,period=1,count=2").flap_steps() == [
        (0, "down", 1), (0.5, "up", 1), (1, "down", 2), (1.5, "up", 2)]
    assert Fault.parse("flap:0-1@2,period=1,count=1,down=0.2").flap_steps() == [(0, "down", 1), (0.2, "up", 1)]


def test_only_delay_shapes_keep_the_prediction_exact():
    assert exactly_predictable((Fault.parse("shape:0-1:latency=0.3,jitter=0.1,bandwidth=1000@1"),))
    assert exactly_predictable((Fault.parse("shape:0-1:loss=0@1"),))
    assert not exactly_predictable((Fault.parse("shape:0-1:latency=0.3,loss=0.01@1"),))
    assert not exactly_predictable((Fault.parse("flap:0-1@1,period=1,count=1"),))
    spec = RunSpec.parse("mesh", 5, faults=(Fault.parse("shape:0-1:latency=0.3@1"),))
    assert spec.exactly_predictable
    # a flap heals a partition from the start: the cut graph is no longer the prediction
    cut = (Fault.parse("partition:0-1@0"), Fault.parse("flap:0-1@1,period=1,count=1"))
    assert surviving_graph(cycle_graph(6), cut).number_of_edges() == 6


@pytest.mark.parametrize("text,needs", [("flap:0-1@1", "period= and count="), ("flap:0-1@1,period=1", "count="),
                                        ("flap:0-1@1,count=3", "period=")])
def test_a_flap_without_its_period_or_count_says_which_is_missing(text, needs):
    with pytest.raises(SpecError, match=f"a flap needs {needs}, e.g. flap:0-1@2,period=1,count=5") as e:
        Fault.parse(text)
    assert "None" not in str(e.value)
