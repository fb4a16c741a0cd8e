"""Base model shared by every wire model: camelCase on the wire, snake_case in code."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Unknown fields are an error, not silently ignored: a typo in a request must be seen."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True)

    def wire(self) -> dict[str, object]:
        """The JSON-ready dict as clients and the state machine see it."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
