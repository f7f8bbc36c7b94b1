"""Jupyter front end: ipywidgets + plotly panels over the same backend calls as the web app."""

from widgets.panels import (
    AugmentationPanel,
    ComparePanel,
    Explorer,
    GradCamPanel,
    LibraryPanel,
    RetrievalPanel,
    ScalingPanel,
    SelfSimilarityPanel,
)

__all__ = ["AugmentationPanel", "ComparePanel", "Explorer", "GradCamPanel", "LibraryPanel", "RetrievalPanel", "ScalingPanel",
           "SelfSimilarityPanel"]
