"""Base model shared by every wire model: camelCase on the wire, snake_case in code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, SecretStr
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema


class ApiModel(BaseModel):
    """Unknown fields are an error, not silently ignored: a typo in a request must be seen."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True)

    def wire(self) -> dict[str, object]:
        """The JSON-ready dict as clients and the state machine see it."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)



@dataclass(frozen=True)
class SecretLength:
    """`Annotated[SecretStr, SecretLength(8, 256)]`: `low` to `high` characters (not bytes; the
    generic length check would say "items"), with those bounds in the JSON schema."""

    low: int
    high: int

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(minLength=self.low, maxLength=self.high)
        return json_schema

    def _check(self, value: SecretStr) -> SecretStr:
        if not self.low <= len(value.get_secret_value()) <= self.high:
            raise ValueError(f"must be {self.low} to {self.high} characters")
        return value
