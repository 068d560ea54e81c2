"""numba hot loops of the sparse inverted index: building, bit packing and exact/approximate top-k.

Posting layout (one segment): each term's postings are cut into chunks of ``CHUNK`` postings
(the last one shorter). A chunk stores ``gap - 1`` of its internal doc ids as one PFOR block
(patched frame of reference: Zukowski et al., "Super-scalar RAM-CPU cache compression", ICDE 2006;
fixed-size blocks as in Lemire & Boytsov, "Decoding billions of integers per second", 2015): a
header (low width, high width, exception count), the low bits of every value, then each exception's
position and high bits; its last doc id and its bit offset (uint32, from the start of its group of
2^BASE_SHIFT chunks, whose int64 offset is in ``chunk_base``) are kept apart for skipping. Impacts are a plain uint8 array
aligned with the postings: packing them per chunk saved 2-6% of their bytes on SPLADE-like weights
(chunk maxima are near 255) and slowed search by a quarter or more. Words are uint32, read as 64-bit
windows, so the packed stream carries two words of padding.

Search (``search_segment``) bounds each range of 2^shift doc ids by sum_t q_t * (the term's largest
impact in the range), scores the best-bounded ranges first to get a k-th score, then every range
whose bound still reaches it, term at a time into int32 accumulators, each chunk decoded into a
buffer and then added. Bounds are exact upper bounds, so with ``mu = 1`` the top k equals brute force
over the same integers (ties by the smaller doc number). ``rescore`` completes the scores of a few
candidates on other terms (approx mode). Everything is ``nogil``.
"""
from __future__ import annotations

import numba as nb
import numpy as np

CHUNK = 256
RANGE_SHIFT = 12  # default 2^12 doc ids per range: the unit of upper bounds
FIRST_RANGES = 4  # ranges scored before the threshold is first used
TILE = 1 << 15  # doc ids per pass when every range is scored: 128 KiB of accumulators
COLLECT_BLOCK = 16  # accumulators checked against the k-th score by one max reduction (small: approx keeps 50-300)
POS_BITS = 8  # an exception's position in its chunk (CHUNK = 256)
MAX_EXCEPTIONS = (1 << POS_BITS) - 1
HEADER_BITS = 5 + 5 + POS_BITS  # per block: low width, high width, exception count
BASE_SHIFT = 16  # chunk offsets are uint32 from the start of their group of 2^16 chunks (< 2^16 * 256 * 31 bits)


@nb.njit(cache=True, inline="always")
def _get(words, pos, width):
    w = pos >> 5
    x = np.int64(words[w]) | (np.int64(words[w + 1]) << 32)
    return (x >> (pos & 31)) & ((np.int64(1) << width) - 1)


@nb.njit(cache=True, inline="always")
def _put(words, pos, width, value):
    w = pos >> 5
    s = pos & 31
    v = np.int64(value) << s
    words[w] |= np.uint32(v & 0xFFFFFFFF)
    if s + width > 32:
        words[w + 1] |= np.uint32((v >> 32) & 0xFFFFFFFF)


@nb.njit(cache=True)
def _bits(x):
    b = 0
    while x > 0:
        b += 1
        x >>= 1
    return b


@nb.njit(cache=True)
def group_by_term(terms, imps, doc_ptr, docs, vocab_size):
    """Stable counting sort of postings by term, dropping zero impacts; doc ids keep input order.

    A posting's doc id is ``docs[i]``, or, when ``docs`` is empty, the row of the CSR ``doc_ptr`` that
    holds position i, which spares building a doc id per posting."""
    term_ptr = np.zeros(vocab_size + 1, np.int64)
    for i in range(terms.size):
        if imps[i] > 0:
            term_ptr[terms[i] + 1] += 1
    for t in range(vocab_size):
        term_ptr[t + 1] += term_ptr[t]
    fill = term_ptr[:-1].copy()
    out_docs = np.empty(term_ptr[-1], np.int32)
    out_imps = np.empty(term_ptr[-1], np.uint8)
    row = 0
    for i in range(terms.size):
        if docs.size:
            d = docs[i]
        else:
            while doc_ptr[row + 1] <= i:
                row += 1
            d = row
        if imps[i] > 0:
            p = fill[terms[i]]
            out_docs[p] = d
            out_imps[p] = imps[i]
            fill[terms[i]] += 1
    return term_ptr, out_docs, out_imps


@nb.njit(cache=True)
def _pfor_widths(vals, n):
    """(width b, high width hb, exceptions e) minimising n·b + e·(POS_BITS + hb) for one block of n values."""
    cnt = np.zeros(33, np.int64)
    for i in range(n):
        cnt[_bits(vals[i])] += 1
    top = 32
    while top > 0 and cnt[top] == 0:
        top -= 1
    best_b, best_e, best_cost = top, 0, n * top
    above = 0
    for b in range(top - 1, -1, -1):
        above += cnt[b + 1]
        if above > MAX_EXCEPTIONS:
            break
        cost = n * b + above * (POS_BITS + top - b)
        if cost < best_cost:
            best_b, best_e, best_cost = b, above, cost
    return best_b, top - best_b, best_e


@nb.njit(cache=True)
def _pfor_size(vals, n):
    b, hb, e = _pfor_widths(vals, n)
    return HEADER_BITS + n * b + e * (POS_BITS + hb)


@nb.njit(cache=True)
def _pfor_put(words, p, vals, n):
    """Write one block at bit ``p``: header (b, hb, e), n low b-bit values, then e (position, high bits) pairs."""
    b, hb, e = _pfor_widths(vals, n)
    _put(words, p, 5, b)
    _put(words, p + 5, 5, hb)
    _put(words, p + 10, POS_BITS, e)
    p += HEADER_BITS
    low = (np.int64(1) << b) - 1
    for i in range(n):
        _put(words, p, b, vals[i] & low)
        p += b
    for i in range(n):
        if vals[i] >> b:
            _put(words, p, POS_BITS, i)
            _put(words, p + POS_BITS, hb, vals[i] >> b)
            p += POS_BITS + hb
    return p


@nb.njit(cache=True, inline="always")
def _pfor_get(words, p, n, out):
    """Decode the block at bit ``p`` into out[:n] (int32). The low parts are read through a 64-bit bit
    buffer refilled one word at a time (1.1-1.4 ns per value here, against 1.8-2.4 for one unaligned
    64-bit read per value), then the exceptions are patched."""
    b = _get(words, p, 5)
    hb = _get(words, p + 5, 5)
    e = _get(words, p + 10, POS_BITS)
    p += HEADER_BITS
    w = p >> 5
    buf = (np.uint64(words[w]) | (np.uint64(words[w + 1]) << np.uint64(32))) >> np.uint64(p & 31)
    avail = 64 - (p & 31)
    w += 2
    width = np.uint64(b)
    mask = (np.uint64(1) << width) - np.uint64(1)
    for i in range(n):
        if avail < b:
            buf |= np.uint64(words[w]) << np.uint64(avail)
            w += 1
            avail += 32
        out[i] = np.int32(buf & mask)
        buf >>= width
        avail -= b
    p += n * b
    for _ in range(e):
        out[_get(words, p, POS_BITS) & (CHUNK - 1)] |= np.int32(_get(words, p + POS_BITS, hb) << b)
        p += POS_BITS + hb
    return p


@nb.njit(cache=True)
def _chunk_gaps(docs, term_start, start, end, gaps):
    """One chunk's ``gap - 1`` values (int64) into gaps[:n]."""
    prev = -1 if start == term_start else docs[start - 1]
    for i in range(start, end):
        gaps[i - start] = docs[i] - prev - 1
        prev = docs[i]


@nb.njit(cache=True, inline="always")
def _chunk_bit(chunk_base, chunk_pos, c):
    """Bit offset of chunk c in the packed words."""
    return chunk_base[c >> BASE_SHIFT] + np.int64(chunk_pos[c])


@nb.njit(cache=True)
def pack(term_ptr, docs):
    """Chunk and PFOR-pack the doc gaps of term-sorted postings.

    Returns the per-term chunk pointer, each group of 2^BASE_SHIFT chunks' bit offset (int64, then the
    stream's length), each chunk's last doc id and bit offset from its group's start (uint32: half the
    bytes of an absolute offset), and the words."""
    vocab_size = term_ptr.size - 1
    term_chunk = np.zeros(vocab_size + 1, np.int64)
    for t in range(vocab_size):
        term_chunk[t + 1] = term_chunk[t] + (term_ptr[t + 1] - term_ptr[t] + CHUNK - 1) // CHUNK
    n_chunks = term_chunk[-1]
    n_groups = (n_chunks + (1 << BASE_SHIFT) - 1) >> BASE_SHIFT
    chunk_base = np.zeros(n_groups + 1, np.int64)
    chunk_last = np.empty(n_chunks, np.int32)
    chunk_pos = np.empty(n_chunks, np.uint32)
    gaps = np.empty(CHUNK, np.int64)
    pos = np.int64(0)
    for t in range(vocab_size):
        c = term_chunk[t]
        for start in range(term_ptr[t], term_ptr[t + 1], CHUNK):
            end = min(start + CHUNK, term_ptr[t + 1])
            _chunk_gaps(docs, term_ptr[t], start, end, gaps)
            chunk_last[c] = docs[end - 1]
            if c & ((1 << BASE_SHIFT) - 1) == 0:
                chunk_base[c >> BASE_SHIFT] = pos
            chunk_pos[c] = pos - chunk_base[c >> BASE_SHIFT]
            pos += _pfor_size(gaps, end - start)
            c += 1
    chunk_base[n_groups] = pos
    words = np.zeros((pos + 31) // 32 + 2, np.uint32)
    for t in range(vocab_size):
        c = term_chunk[t]
        for start in range(term_ptr[t], term_ptr[t + 1], CHUNK):
            end = min(start + CHUNK, term_ptr[t + 1])
            _chunk_gaps(docs, term_ptr[t], start, end, gaps)
            _pfor_put(words, _chunk_bit(chunk_base, chunk_pos, c), gaps, end - start)
            c += 1
    return term_chunk, chunk_base, chunk_last, chunk_pos, words


@nb.njit(cache=True)
def unpack(words, term_ptr, term_chunk, chunk_base, chunk_last, chunk_pos):
    """All doc ids back (int32, in term order, aligned with the impacts): for merging and checks."""
    docs = np.empty(term_ptr[-1], np.int32)
    gaps = np.empty(CHUNK, np.int32)
    for t in range(term_ptr.size - 1):
        c0 = term_chunk[t]
        for c in range(c0, term_chunk[t + 1]):
            o = term_ptr[t] + (c - c0) * CHUNK
            n = min(CHUNK, term_ptr[t + 1] - o)
            doc = np.int64(-1) if c == c0 else np.int64(chunk_last[c - 1])
            _pfor_get(words, _chunk_bit(chunk_base, chunk_pos, c), n, gaps)
            for x in range(n):
                doc += gaps[x] + 1
                docs[o + x] = doc
    return docs


@nb.njit(cache=True, inline="always")
def _better(s, n, s2, n2):
    return s > s2 or (s == s2 and n < n2)


@nb.njit(cache=True)
def _offer(ts, tn, m, k, s, n):
    """Put (score s, doc number n), which beats the k-th entry, into the top-k min-heap (ts, tn) of
    size m, worst entry at the root; returns the new size. Each live document is offered once."""
    if m < k:
        i = m
        m += 1
    else:
        i = 0  # replace the root, then sift down
        while True:
            c = 2 * i + 1
            if c >= m:
                break
            if c + 1 < m and _better(ts[c], tn[c], ts[c + 1], tn[c + 1]):
                c += 1
            if not _better(s, n, ts[c], tn[c]):
                break
            ts[i] = ts[c]
            tn[i] = tn[c]
            i = c
        ts[i] = s
        tn[i] = n
        return m
    while i > 0:  # sift up
        parent = (i - 1) // 2
        if not _better(ts[parent], tn[parent], s, n):
            break
        ts[i] = ts[parent]
        tn[i] = tn[parent]
        i = parent
    ts[i] = s
    tn[i] = n
    return m


@nb.njit(cache=True, inline="always")
def _threshold(ts, tn, m, k):
    """(score, doc number) of the k-th entry (the heap's root), or (0, max) while fewer than k are held."""
    if m < k:
        return np.int64(0), np.int64(9223372036854775807)
    return ts[0], tn[0]


@nb.njit(cache=True)
def range_max(term_ptr, docs, imps, shift, n_docs):
    """Largest impact of each term in each range of 2^shift doc ids: uint8 [vocab, ranges]."""
    n_ranges = max(1, (n_docs + (1 << shift) - 1) >> shift)
    out = np.zeros((term_ptr.size - 1, n_ranges), np.uint8)
    for t in range(term_ptr.size - 1):
        for i in range(term_ptr[t], term_ptr[t + 1]):
            r = docs[i] >> shift
            if imps[i] > out[t, r]:
                out[t, r] = imps[i]
    return out


@nb.njit(cache=True, nogil=True)
def _accumulate(words, imps, term_ptr, term_chunk, chunk_base, chunk_last, chunk_pos, shift, q_terms, q_vals, ranges, sel, everything, n_docs, acc):
    """Add q * impact into ``acc[doc]`` for the postings in ``ranges`` (ascending), each chunk decoded
    once. Ranges go in doc order and all query terms are read range by range, so the accumulators in
    use stay in cache. With ``everything``, all postings are added unchecked (in tiles of TILE doc ids;
    the caller ignores the rest); else only those whose range has ``sel == 1``. Scores stay below
    2^24 (sparse_format.SCORE_LIMIT), so the arithmetic is int32."""
    nq = q_terms.size
    cur = np.empty(nq, np.int64)
    gaps = np.empty(CHUNK, np.int32)
    for j in range(nq):
        cur[j] = term_chunk[q_terms[j]]
    step = np.int64(TILE) if everything else np.int64(1) << shift
    n_groups = (n_docs + step - 1) // step if everything else ranges.size
    for g in range(n_groups):
        lo = g * step if everything else np.int64(ranges[g]) << shift
        hi = lo + step
        for j in range(nq):
            t = q_terms[j]
            q = np.int32(q_vals[j])
            c0 = term_chunk[t]
            cend = term_chunk[t + 1]
            c = cur[j]
            if c < cend and chunk_last[c] < lo:
                c += np.searchsorted(chunk_last[c:cend], lo)
            while c < cend and (c == c0 or chunk_last[c - 1] + 1 < hi):
                o = term_ptr[t] + (c - c0) * CHUNK
                n = min(CHUNK, term_ptr[t + 1] - o)
                doc = np.int32(-1) if c == c0 else chunk_last[c - 1]
                _pfor_get(words, _chunk_bit(chunk_base, chunk_pos, c), n, gaps)
                if everything:
                    for x in range(n):
                        doc += gaps[x] + 1
                        acc[doc] += q * np.int32(imps[o + x])
                else:
                    for x in range(n):
                        doc += gaps[x] + 1
                        if sel[doc >> shift] == 1:
                            acc[doc] += q * np.int32(imps[o + x])
                c += 1
            cur[j] = c


@nb.njit(cache=True, nogil=True)
def _collect(doc_numbers, deleted, shift, ranges, acc, ts, tn, m, k):
    """Offer the documents of ``ranges`` with their (final) accumulated scores to the top k."""
    th_s, th_n = _threshold(ts, tn, m, k)
    n_docs = doc_numbers.size
    for i in range(ranges.size):
        lo = np.int64(ranges[i]) << shift
        hi = min(lo + (np.int64(1) << shift), n_docs)
        for blk in range(lo, hi, COLLECT_BLOCK):
            end = min(blk + COLLECT_BLOCK, hi)
            top = np.int32(0)
            for d in range(blk, end):  # a max reduction the compiler vectorises: most blocks stop here
                top = max(top, acc[d])
            if top < th_s or top == 0:
                continue
            for d in range(blk, end):
                a = np.int64(acc[d])
                if a >= th_s and a > 0 and deleted[d] == 0:
                    dn = doc_numbers[d]
                    if m < k or _better(a, dn, th_s, th_n):
                        m = _offer(ts, tn, m, k, a, dn)
                        th_s, th_n = _threshold(ts, tn, m, k)
    return m


@nb.njit(cache=True, nogil=True)
def search_segment(words, imps, term_ptr, term_chunk, chunk_base, chunk_last, chunk_pos, rmax, shift,
                   doc_numbers, deleted, q_terms, q_vals, mu, first, acc, sel, ts, tn, m, k):
    """Top-k of one segment by range upper bounds, continuing the top-k held in (ts, tn, m); returns the new m.

    Ranges of 2^shift doc ids get the bound sum_t q_t * rmax[t, r] (BMP's block filtering, Mallia
    et al., SIGIR 2024, with ranges in place of small blocks). The ``first`` best-bounded ranges are
    scored to set a threshold (none when the lowest bound is at least half the highest: the k-th
    score would have to pass it to skip anything), then every other range whose bound times ``mu``
    reaches the k-th score; with mu = 1 this is exact, a bound equal to the k-th score being kept for
    ties on doc number.
    Scratch: ``acc`` int32 (>= n_ranges << shift) all zero and ``sel`` uint8 (>= n_ranges) all zero;
    both are left so."""
    n_ranges = rmax.shape[1]
    ub = np.zeros(n_ranges, np.int64)
    for j in range(q_terms.size):
        q = q_vals[j]
        row = rmax[q_terms[j]]
        for r in range(n_ranges):
            ub[r] += q * np.int64(row[r])
    order = np.argsort(-ub)
    n_pos = 0
    while n_pos < n_ranges and ub[order[n_pos]] > 0:
        n_pos += 1
    n_head = min(first, n_pos)
    if n_pos and ub[order[n_pos - 1]] * 2 >= ub[order[0]]:
        n_head = 0  # flat bounds (the k-th score was 0.28 of the best bound at 300k, median)
    head = np.sort(order[:n_head])
    for r in head:
        sel[r] = 1
    _accumulate(words, imps, term_ptr, term_chunk, chunk_base, chunk_last, chunk_pos, shift, q_terms, q_vals, head, sel, n_head == n_pos, doc_numbers.size, acc)
    m = _collect(doc_numbers, deleted, shift, head, acc, ts, tn, m, k)
    th_s, th_n = _threshold(ts, tn, m, k)
    n_tail = n_head
    while n_tail < n_pos and (m < k or ub[order[n_tail]] * mu >= th_s):
        n_tail += 1
    tail = np.sort(order[n_head:n_tail])
    for r in head:
        sel[r] = 2  # scored: its accumulators are final and must not be offered again
    for r in tail:
        sel[r] = 1
    if tail.size:
        _accumulate(words, imps, term_ptr, term_chunk, chunk_base, chunk_last, chunk_pos, shift, q_terms, q_vals, tail, sel, n_tail == n_pos, doc_numbers.size, acc)
        m = _collect(doc_numbers, deleted, shift, tail, acc, ts, tn, m, k)
    size = np.int64(1) << shift
    for i in range(n_tail):
        r = order[i]
        sel[r] = 0
        acc[r * size:(r + 1) * size] = 0
    return m


@nb.njit(cache=True, nogil=True)
def rescore(words, imps, term_ptr, term_chunk, chunk_base, chunk_last, chunk_pos, q_terms, q_vals, cand, scores):
    """Add each query term's q * impact to ``scores[i]`` of candidate ``cand[i]`` (internal ids,
    ascending): every term's chunks are walked once in doc order, skipping by their last doc ids, and a
    chunk is decoded only when a candidate falls in it. This completes the scores of candidates found
    on the other terms (approx mode), so the scores returned are exact dot products."""
    gaps = np.empty(CHUNK, np.int32)
    for j in range(q_terms.size):
        t = q_terms[j]
        q = q_vals[j]
        c0 = term_chunk[t]
        cend = term_chunk[t + 1]
        if c0 == cend:
            continue
        c = c0
        decoded = np.int64(-1)
        n, x, o = 0, 0, np.int64(0)
        doc = np.int32(-1)
        for i in range(cand.size):
            d = cand[i]
            if chunk_last[c] < d:
                c += np.searchsorted(chunk_last[c:cend], d)
                if c == cend:
                    break
            if decoded != c:
                o = term_ptr[t] + (c - c0) * CHUNK
                n = min(CHUNK, term_ptr[t + 1] - o)
                _pfor_get(words, _chunk_bit(chunk_base, chunk_pos, c), n, gaps)
                doc = np.int32(-1) if c == c0 else chunk_last[c - 1]
                doc += gaps[0] + 1
                decoded, x = c, 0
            while x < n - 1 and doc < d:
                x += 1
                doc += gaps[x] + 1
            if doc == d:
                scores[i] += q * np.int64(imps[o + x])
    return scores


@nb.njit(cache=True, nogil=True)
def offer_all(scores, cand, doc_numbers, ts, tn, m, k):
    """Offer the candidates' (complete) scores to the top-k heap (ts, tn) of size m; returns the new m."""
    for i in range(cand.size):
        s = scores[i]
        dn = doc_numbers[cand[i]]
        if s > 0 and (m < k or _better(s, dn, ts[0], tn[0])):
            m = _offer(ts, tn, m, k, s, dn)
    return m
