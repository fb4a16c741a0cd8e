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


@contextmanager
def patches() -> Iterator[None]:
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(distributed.DistributedIterationComponent,
                                              "_map_run", _map_run))
        yield
