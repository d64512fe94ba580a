"""The hostile-input battery: connections a peer must refuse without harm to its other links.

Each case opens connections to one peer's listening port and sends what a well-behaved
neighbour never would (docs/design.md, wire format): a handshake from an unknown id, from
a peer that is no neighbour, a second connection for an established edge followed by
garbage, EOF inside the handshake, a frame longer than any message, and a flood of
connections that never speak. ``p2p grade --hostile`` replays a run (local backend) and
fires the battery at one peer of each other implementation mid-run; that peer passes
when it survives (its exit is clean) and its other links keep working (its counts and
every edge of it stay exact). tests/testbed/test_hostile_clients.py fires it at ours.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from generator.predict import predict
from generator.spec import RunSpec
from peer.logfiles import messages_file
from testbed.base import RunnerError
from testbed.battery import BatteryResult, Target, connect, fire, first_sender

BATTERY = Path(__file__).with_name("battery.py")  # also run inside a container: python3 -c <its text>

__all__ = ["BatteryResult", "Target", "connect", "fire", "hostile_grades"]


# ---- p2p grade --hostile ---------------------------------------------------------------------


def hostile_grades(run_dir: Path, grades: list, say: Callable[[str], None], wait: float = 60.0) -> None:
    """Replay ``run_dir``'s spec with the battery fired at one peer of each other implementation; add the
    outcome to ``grades`` (analysis.grade.ImplGrade of the original run). A run of programs replays on the
    local backend (the battery from here, at the peer's port); a run of images on compose (the battery
    from a container on the run's network)."""
    from analysis.grade import grade
    from testbed.base import Progress, prepare_run, write_exits

    spec = RunSpec.load(run_dir / "spec.json")
    images = any(i.image and not i.program for i in spec.implementations)
    graph = spec.graph()
    targets = {impl.name: impl.ids[0] for impl in spec.implementations}
    if images:
        from testbed.compose import ComposeRunner

        runner = ComposeRunner.connect()
        # No stagger on compose: our peers' forwards are held 0.2 s each (emulated latency, counts
        # unchanged) and every peer idles 5 s at least, so the attacked peer is mid-run when hit.
        opts = dataclasses.replace(spec.options, latency=spec.options.latency or 0.2,
                                   idle=max(spec.options.idle, 5.0))
        spec = dataclasses.replace(spec, options=opts)
    else:
        from testbed.local import LocalRunner

        runner = LocalRunner(stagger=0.3)  # peers 0.3 s apart: the attacked peer is mid-run when hit
    plan = prepare_run(spec, run_dir / "hostile", predict(graph, spec.topology))
    say(f"hostile: replaying {spec.name} ({runner.name}) in {plan.run_dir}; battery against peer(s) "
        f"{', '.join(f'{p} ({name})' for name, p in targets.items())}")
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", runner.run(plan, Progress(interval=60))))
    thread.start()
    outcomes: dict[str, BatteryResult] = {}
    try:
        for name, p in targets.items():
            strangers = [q for q in range(spec.n) if q != p and not graph.has_edge(p, q)]
            stranger = strangers[0] if strangers else -1
            aim = _aim_in_network if images else _aim_local
            outcomes[name] = aim(plan, runner, p, stranger, wait)
    finally:
        thread.join()
    if "result" not in box:
        raise RunnerError(f"hostile: the replay {plan.run_dir} did not complete (see above)")
    write_exits(plan.run_dir, box["result"])
    replay = {g.name: g for g in grade(plan.run_dir, attacked=frozenset(targets.values()))}
    for g in grades:
        if g.name in targets:
            _judge(g, targets[g.name], outcomes[g.name], replay[g.name])


def _aim_local(plan, runner, p: int, stranger: int, wait: float) -> BatteryResult:
    """From here at the peer's port on 127.0.0.1, once it logged its first message (a link is up)."""
    end = time.monotonic() + wait
    while not runner.ports and time.monotonic() < end:
        time.sleep(0.01)
    linked = first_sender(str(messages_file(plan.log_dir, p)), wait)
    return fire(Target(("127.0.0.1", runner.ports[p]), plan.spec.n, linked, None if stranger < 0 else stranger))


def _aim_in_network(plan, runner, p: int, stranger: int, wait: float) -> BatteryResult:
    """From a container of our image on the attacked peer's network (labelled with the run, removed
    after): it reads the peer's first logged message from the logs mounted read-only, then fires."""
    from generator.render import RUN_LABEL, container_user, service_name
    from testbed.compose import container_of

    end = time.monotonic() + wait
    target = None
    while target is None and time.monotonic() < end:
        target = container_of(runner.client, plan.run_id, p)
        if target is None or target.status != "running":
            target = None
            time.sleep(0.05)
    if target is None:
        raise RunnerError(f"hostile: peer {p}'s container never ran")
    network = next(iter(target.attrs["NetworkSettings"]["Networks"]))
    user = container_user()
    box = runner.client.containers.run(
        runner.image, entrypoint=["python3", "-c", BATTERY.read_text(), service_name(p), str(plan.spec.port),
                                  str(plan.spec.n), str(stranger), f"/logs/{p}.txt", str(wait)],
        network=network, labels={RUN_LABEL: plan.run_id}, user=f"{user[0]}:{user[1]}", detach=True,
        volumes={str(plan.log_dir.resolve()): {"bind": "/logs", "mode": "ro"}})
    try:
        code = box.wait(timeout=wait + 60).get("StatusCode")
        out = box.logs(stdout=True, stderr=True).decode(errors="replace").strip()
    finally:
        box.remove(force=True)
    if code != 0:
        raise RunnerError(f"hostile: the battery container exited {code}: {out[-2000:]}")
    return BatteryResult(**json.loads(out.splitlines()[-1]))


def _judge(g, p: int, battery: BatteryResult, replay) -> None:
    """Into the original grade: the replay's verdict for the attacked implementation, and what was sent.
    A battery cut short (the peer no longer listened: it may simply have finished) certifies nothing."""
    g.hostile = {"peer": p, "sent": battery.sent, "refused": battery.refused,
                 "silent_connections": battery.silent_opened, "replay_verdict": replay.verdict,
                 "replay_reasons": replay.reasons}
    if battery.refused:
        g.checked = False
        g.notes.append(f"hostile battery incomplete: peer {p} no longer listened for "
                       f"{', '.join(battery.refused)} (finished already?): not shown to survive them")
    for reason in replay.reasons:
        g.hostile_problems.append(f"under attack: {reason}")
