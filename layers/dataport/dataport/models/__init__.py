"""Pydantic models: requests, responses, jobs, events, workflow task IO, source documents."""
