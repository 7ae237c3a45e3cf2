"""What meets the outside world: the HTTP receiver (`web`), the `archiver` command (`cli`), the
`archiver try` sample (`trial`) and what the Celery tasks call (`jobs`). The domain never imports it."""
