"""The torch-free core of patsparse, shared by the PyTorch side and ``tvm_ext``.

Pattern codes and libraries (:mod:`patsparse.core.patterns`), the compact pattern-sparse
weight format (:mod:`patsparse.core.formats`) and every typed error
(:mod:`patsparse.core.errors`). Only numpy: ``tvm_ext`` imports these and nothing else of
patsparse, so a TVM user who takes ``tvm_ext`` alone does not load torch
(``tests/test_layering.py`` checks it).
"""
