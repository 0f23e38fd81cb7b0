"""The evaluation task registry: each task declares the data it reads and the model capability it needs.

    @register_task("clip-youcookii", data=("youcookii", "features"), capability="embed")
    def clip_youcookii(embedder, cfg: EvalConfig, stores: StoreCache) -> dict: ...

`data[0]` is the task's annotation (the EvalData key `--annotations` sets); a task whose annotation is not
configured is skipped by `vidlang eval all`, and so is a task whose capability (embed | score | generate) the
evaluated model lacks, with the reason recorded and printed. The run function receives the model's evaluator for
that capability (e.g. an Embedder), the EvalConfig and the feature-store cache, and returns a result dict
{"metrics", "baselines", "counts", "protocol", ...}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vidlang.registry import Registry


@dataclass(frozen=True)
class Task:
    name: str
    run: Callable[..., dict]
    data: tuple[str, ...]  # EvalData keys the task reads; data[0] is its annotation
    capability: str = "embed"

    @property
    def annotation(self) -> str:
        return self.data[0]


TASKS: Registry[Task] = Registry("evaluation task")


def register_task(name: str, data: tuple[str, ...], capability: str = "embed"):
    def deco(fn: Callable[..., dict]) -> Callable[..., dict]:
        TASKS.add(name, Task(name, fn, tuple(data), capability))
        return fn

    return deco


def task_names() -> list[str]:
    """Every registered task, in registration order (the tasks shipped with vidlang register on import)."""
    import vidlang.eval.tasks  # noqa: F401

    return TASKS.names()


def get_task(name: str) -> Task:
    import vidlang.eval.tasks  # noqa: F401

    return TASKS.get(name)
