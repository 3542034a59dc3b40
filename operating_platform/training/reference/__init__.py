"""The reference training harness: a training loop, Adam, a behaviour-cloning policy and mock data/models.

Scripts and tests train with it to prove the core training library (reader, loader,
checkpoints, hard examples) end to end; a real policy and optimizer replace it. It is
built on the core library's public API only, and the core never imports it.
"""
