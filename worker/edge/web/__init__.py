"""The FastAPI receiver: Stream's webhook (`webhook`), /healthz, /readyz, /metrics and the status
page (`monitoring`), their paths (`paths`), assembled by `app.create_app`."""
