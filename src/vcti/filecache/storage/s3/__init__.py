"""S3Storage: the cache in an S3 bucket (or MinIO, Ceph), shared by many hosts.

Install the extra: ``pip install "vcti-file-cache[s3]"``; importing this package without
boto3 raises an ``ImportError`` that names it. The modules of the package:

- ``_storage``: :class:`S3Storage`, the backend the core talks to;
- ``_head``: the head of a key (a fill's claim, or the published model) and attempts;
- ``_fill``: claims, the nesting check across hosts, stage, a fenced publish, discard;
- ``_sweep``: reclaiming what nobody holds, and checking for corrupt objects;
- ``_listing``: the object layout, and what one listing of a root shows;
- ``_catalog``: object names, listings, heads and the cached metadata of a root;
- ``_lease``: leases made of conditional writes, and the keeper thread;
- ``_hold``: the leases and pins one process holds, renewed in the background;
- ``_client``: the few S3 requests made, counted, with their errors as ``OSError``.
"""

from __future__ import annotations

from ._storage import S3Storage

S3Storage.__module__ = __name__  # its public home

__all__ = ["S3Storage"]
