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
