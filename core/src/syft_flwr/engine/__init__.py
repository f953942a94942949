"""The server engine: aux requests, resource checks, job start, events, workspace, resume."""
