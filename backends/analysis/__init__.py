"""Layer 2: pure computations, arrays in and arrays (or result dataclasses) out.

Windows (IoU, NMS), 2D-TAN maps, TSM and events, CVRL/FAME sampling, Grad-CAM math, temporal scales.
"""
