"""Tasks by name (classification, 2D segmentation, BraTS 2D / 3D): see :mod:`.registry`.

Only the registry is imported here; a task's implementation is imported when first asked for.
"""

from braintumor.tasks.registry import (
    CASES,
    CLASSES,
    IMAGES,
    LABELS,
    MASK,
    PredictOptions,
    Task,
    TaskSetup,
    evaluate_model,
    get_task,
    list_tasks,
    model_task,
    register_task,
    task_of,
)

__all__ = [
    "CASES",
    "CLASSES",
    "IMAGES",
    "LABELS",
    "MASK",
    "PredictOptions",
    "Task",
    "TaskSetup",
    "evaluate_model",
    "get_task",
    "list_tasks",
    "model_task",
    "register_task",
    "task_of",
]
