"""The HTTP door: FastAPI on uvicorn: `/healthz`, the plugins' routes (webhooks, git over HTTP), the JSON API
(`/api/v1`) and the dashboard (`/`)."""
