"""Test node between the recorder and the saver: forwards the episode stream, but sends one message
twice, swaps two others and sends the saver an input it does not know (INJECT_* env picks which)."""

import os

from dora import Node


def main() -> None:
    duplicate = int(os.environ.get("INJECT_DUPLICATE_SEQ", "10"))
    swap = int(os.environ.get("INJECT_SWAP_SEQ", "20"))  # swap + 1 goes out before swap
    node = Node()
    held = None
    for event in node:
        if event["type"] != "INPUT" or event["id"] != "episode":
            if event["type"] == "STOP":
                break
            continue
        value, metadata = event["value"], event["metadata"]
        seq = metadata.get("seq")
        if seq == swap:
            held = (value, metadata)
            continue
        node.send_output("episode", value, metadata)
        if seq == duplicate:
            node.send_output("episode", value, metadata)
            node.send_output("noise", value, metadata)
        if held is not None and seq == swap + 1:
            node.send_output("episode", *held)
            held = None


if __name__ == "__main__":
    main()
