"""`sprig train sparse`: training SPLADE students (inference-free, siamese, decoder echo SPLADE with LoRA).

Between ``rag`` and ``eval`` in the layer order, beside ``rag`` (rank 5, neither imports the other): it reads
corpora, encoders and the brute-force retriever; the benchmark in ``sprig.eval.bench`` and the CLI import it.
"""
