"""The face gallery: a SQLite store of identities, images and embeddings, and a FAISS index derived from it.

Typical use::

    gallery = Gallery.create(folder, embedder.fingerprint, embedder.embedding_size, checkpoint)
    gallery.enroll(load_manifest("faces/"), embedder)
    results = gallery.match(embedder.embed_all(["probe.jpg"])[0], embedder)
"""
from .enrollment import EnrollSummary
from .gallery import EmptyGalleryError, FingerprintMismatchError, Gallery, UnknownIdentityError
from .index import INDEX_TYPES, IndexConfig
from .matching import UNKNOWN, IdentityCandidate, ImageHit, MatchResult, TwinReport
from .lock import LockTimeoutError
from .store import GalleryNotFoundError, ImageRecord

__all__ = [
    "INDEX_TYPES",
    "UNKNOWN",
    "EmptyGalleryError",
    "EnrollSummary",
    "FingerprintMismatchError",
    "Gallery",
    "GalleryNotFoundError",
    "IdentityCandidate",
    "ImageHit",
    "ImageRecord",
    "IndexConfig",
    "LockTimeoutError",
    "MatchResult",
    "TwinReport",
    "UnknownIdentityError",
]
