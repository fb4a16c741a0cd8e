"""The workflow engine: starts, stops and answers the Step Functions executions of jobs.

`WorkflowEngine` is what the logic needs; `StepFunctionsEngine` is the one module that calls
Step Functions; `workflow_engine()` builds it from settings (once per process). Unit tests pass
any object with these methods.
"""

from dataport.engine.stepfunctions import (
    Machine,
    StepFunctionsEngine,
    TaskGone,
    WorkflowEngine,
    WorkflowUnavailable,
    workflow_engine,
)

__all__ = ["Machine", "StepFunctionsEngine", "TaskGone", "WorkflowEngine",
           "WorkflowUnavailable", "workflow_engine"]
