"""Short-lived download links to archived files (`archiver link`, the status page's download button).

`maker`: one archived transfer's object as a URL its store signs (S3 presigned GET, GCS V4 signed URL,
Azure SAS: `worker.storage`'s optional ``link``), or, for local disk, a token `archiver web` serves;
`served`: those tokens, signed with a random key kept in Redis. A link is a bearer credential until it
expires: whoever holds it downloads the file.
"""

from worker.links.maker import DEFAULT_TTL, Link, LinkMaker, ServedFile

__all__ = ["DEFAULT_TTL", "Link", "LinkMaker", "ServedFile"]
