"""Adapters that let sprig/eval/bench/worker.py build and search one system each (see its docstring).

sprig_engine and scipy_brute run in sprig's interpreter; lucene, seismic and bmp in the peers
virtualenv made by sprig/eval/bench/peers_setup.sh.
"""
