"""Where moto's Step Functions interpreter (taken from LocalStack) differs from AWS in a way the
workflows depend on, and the patch that makes it behave as AWS does. Installed by the local stack
for its lifetime (`patches()`), undone when it stops.

Distributed Map tolerated failures: moto runs each item of a DISTRIBUTED Map in-process (no child
executions: ListExecutions shows none, DescribeMapRun counts them) and counts a failed item, but
never fails the Map Run for it: with the default tolerance of 0 a failed shard left the export
"succeeded" without that shard's sessions. AWS fails the Map Run with
States.ExceedToleratedFailureThreshold once the failed (or timed out) items exceed
ToleratedFailureCount or ToleratedFailurePercentage (both 0 unless set), and the Map state's Catch
sees that error.

Step Functions tasks (`arn:aws:states:::states:startExecution[.sync[:2]]`, the import's passes):
moto dropped the request and response normalisation of the interpreter it took from LocalStack,
so the task hands boto3 AWS's parameter names (`StateMachineArn`, which botocore's serializer
refuses: a KeyError, States.Runtime) and reads the answer by them (`ExecutionArn`, while boto3
answers `executionArn`); a .sync:2 task's output then has boto3's keys (`output`) where AWS
gives `Output`. The patch renames the parameters to boto3's spelling, and the answers
(StartExecution's and the DescribeExecution a .sync task ends with) to AWS's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
    distributed_iteration_component as distributed,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_sfn as sfn_task,
)

#: AWS's cause when a Map Run fails for its tolerated failure threshold
THRESHOLD_CAUSE = "The specified tolerated failure threshold was exceeded"

_moto_map_run = distributed.DistributedIterationComponent._map_run


def _map_run(self: Any, env: Any, eval_input: Any) -> None:
    _moto_map_run(self, env, eval_input)
    items = eval_input.map_run_record.item_counter
    failed = items.failed.get() + items.timed_out.get()
    total = max(1, items.total.get())
    count = eval_input.tolerated_failure_count or 0
    percentage = eval_input.tolerated_failure_percentage or 0
    if failed > count and 100 * failed / total > percentage:
        error = StatesErrorNameType.StatesExceedToleratedFailureThreshold
        details: Any = {"executionFailedEventDetails": ExecutionFailedEventDetails(
            error=error.to_name(), cause=THRESHOLD_CAUSE)}  # EventDetails is a total TypedDict
        raise FailureEventException(failure_event=FailureEvent(
            env=env, error_name=StatesErrorName(typ=error),
            event_type=HistoryEventType.ExecutionFailed, event_details=details))


_Sfn = sfn_task.StateTaskServiceSfn
_moto_sfn_parameters = _Sfn._normalise_parameters
_moto_sfn_service_task = _Sfn._eval_service_task


def _boto_cased(name: str) -> str:
    return name[:1].lower() + name[1:]


def _aws_cased(answer: dict[str, Any]) -> dict[str, Any]:
    return {key[:1].upper() + key[1:]: value for key, value in answer.items()}


def _sfn_parameters(self: Any, parameters: dict[str, Any], boto_service_name: str | None = None,
                    service_action_name: str | None = None) -> None:
    _moto_sfn_parameters(self, parameters, boto_service_name, service_action_name)  # Input
    for key in list(parameters):
        parameters[_boto_cased(key)] = parameters.pop(key)


def _sfn_service_task(self: Any, env: Any, resource_runtime_part: Any,
                      normalised_parameters: dict[str, Any], state_credentials: Any) -> None:
    _moto_sfn_service_task(self, env, resource_runtime_part, normalised_parameters,
                           state_credentials)
    env.stack.append(_aws_cased(env.stack.pop()))


def _sfn_response(_self: Any, response: Any, *_: Any, **__: Any) -> None:
    """In place, as the interpreter expects (the service and action do not change the names)."""
    if isinstance(response, dict):
        renamed = _aws_cased(response)
        response.clear()
        response.update(renamed)


@contextmanager
def patches() -> Iterator[None]:
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(distributed.DistributedIterationComponent,
                                              "_map_run", _map_run))
        for name, patch in (("_normalise_parameters", _sfn_parameters),
                            ("_eval_service_task", _sfn_service_task),
                            ("_normalise_response", _sfn_response)):
            stack.enter_context(mock.patch.object(_Sfn, name, patch))
        yield
