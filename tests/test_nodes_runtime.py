"""The shared node event loop, on dora's own MockNode: dispatch, STOP, and stopping when the recorder exits."""

import pyarrow as pa
from dora.testing import MockNode

from operating_platform.dataflow.runtime import emitter, run_events


def test_inputs_are_dispatched_until_the_named_input_closes():
    node = MockNode([("tick", pa.array([0])), {"type": "INPUT_CLOSED", "id": "other"},
                     {"type": "INPUT_CLOSED", "id": "recorder_done"}, ("tick", pa.array([0]))])
    seen, closed = [], []
    run_events(node, lambda i, v, m: seen.append(i), on_closed=closed.append, until_closed="recorder_done")
    assert seen == ["tick"] and closed == ["other"]


def test_stop_ends_the_loop_unless_the_node_wants_to_finish_its_work():
    events = [("a", pa.array([1])), {"type": "STOP", "id": "MANUAL"}, ("a", pa.array([2])), ("a", pa.array([3]))]
    seen = []
    run_events(MockNode(events), lambda i, v, m: seen.append(v[0].as_py()))
    assert seen == [1]
    seen.clear()
    run_events(MockNode(events), lambda i, v, m: seen.append(v[0].as_py()), on_stop=lambda: None,
               done=lambda: len(seen) == 2)
    assert seen == [1, 2]


def test_emitter_sends_through_the_node():
    node = MockNode([])
    emitter(node)("status", pa.array(["{}"]), {"k": 1})
    assert node.outputs["status"][0].to_pylist() == ["{}"]
