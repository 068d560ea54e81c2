"""GET /documents/{id}, POST /documents, DELETE /documents/{id}. Writes are visible to the next search and persisted."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from sprig.api.deps import SearcherDep, WriteAccess
from sprig.api.schemas import DocumentPublic, DocumentsCreate, DocumentsCreated, errors
from sprig.corpus.chunking import Passage
from sprig.indexer.update import add_passages

router = APIRouter(prefix="/documents", tags=["documents"])


@router.get("/{passage_id:path}", response_model=DocumentPublic, responses=errors(404, 422))
def get_document(passage_id: str, searcher: SearcherDep) -> DocumentPublic:
    p = searcher.get(passage_id)
    if p is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no passage with id '{passage_id}'")
    return DocumentPublic(id=p.passage_id, doc_id=p.doc_id, title=p.title, text=p.text, metadata=p.metadata)


@router.post("", response_model=DocumentsCreated, status_code=status.HTTP_201_CREATED, dependencies=[WriteAccess],
             responses=errors(400, 401, 409, 413, 422))
def add_documents(body: DocumentsCreate, searcher: SearcherDep) -> DocumentsCreated:
    ids = [d.id for d in body.documents]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise HTTPException(status.HTTP_409_CONFLICT, f"ids repeated in the request: {', '.join(repeated)}")  # not a schema error
    existing = [i for i in ids if searcher.get(i) is not None]
    if existing:
        raise HTTPException(status.HTTP_409_CONFLICT, f"ids already in the index: {', '.join(existing)} (DELETE them first)")
    add_passages(searcher.index, searcher.encoders, [Passage(d.id, d.doc_id or d.id, d.title, d.text, d.metadata) for d in body.documents])
    return DocumentsCreated(ids=ids, count=len(ids))


@router.delete("/{passage_id:path}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[WriteAccess],
               responses=errors(401, 404, 422))
def delete_document(passage_id: str, searcher: SearcherDep) -> Response:
    if not searcher.index.delete(passage_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no passage with id '{passage_id}'")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
