"""The MongoDB trial store: ``connection`` (URLs, client, errors), ``store`` (MongoTrials),
``jobs`` (the claim/finish queries), ``attachments`` (GridFS). Layout: docs/schema.md."""


def __getattr__(name: str):  # lazy, so importing jobs/connection alone stays cheap
    if name in ("MongoTrials", "MongoJobs"):
        from . import store
        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MongoTrials", "MongoJobs"]
